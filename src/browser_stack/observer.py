"""What the controller reports as it works; metrics listen, the controller
does not know who does."""

from __future__ import annotations

from typing import Protocol


class Observer(Protocol):
    def ensure_done(self, outcome: str, seconds: float) -> None:
        """outcome: "warm", "cold" or an error code ("program_failed", ...)."""

    def ensure_joined(self) -> None:
        """A caller joined a start already in flight."""

    def probed(self, program: str, purpose: str) -> None:
        """A readiness probe ran: purpose "start" or "liveness"."""

    def program_exited(self, program: str) -> None:
        """A ready program's process exited, and not because we stopped it."""

    def liveness_failed(self, program: str) -> None:
        """A ready program failed its liveness check."""

    def start_begun(self) -> None: ...

    def program_ready(self, program: str, seconds: float) -> None: ...

    def start_ended(self, seconds: float, ok: bool) -> None: ...

    def stopped(self, reason: str) -> None:
        """The stack was stopped: "request" or an idle reason."""

    def idle_check_failed(self, error: str) -> None:
        """An idle check raised (`error`: our error code or the exception's type)."""


class NullObserver:
    def ensure_done(self, outcome: str, seconds: float) -> None:
        pass

    def ensure_joined(self) -> None:
        pass

    def probed(self, program: str, purpose: str) -> None:
        pass

    def program_exited(self, program: str) -> None:
        pass

    def liveness_failed(self, program: str) -> None:
        pass

    def start_begun(self) -> None:
        pass

    def program_ready(self, program: str, seconds: float) -> None:
        pass

    def start_ended(self, seconds: float, ok: bool) -> None:
        pass

    def stopped(self, reason: str) -> None:
        pass

    def idle_check_failed(self, error: str) -> None:
        pass
