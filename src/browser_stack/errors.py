"""One small exception tree. Each error carries a machine code, an HTTP status
and structured fields; the HTTP layer and the CLI render them, nothing else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


class BrowserStackError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.message = message
        self.fields: dict[str, Any] = fields

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.code, "message": self.message, **self.fields}


class ConfigError(BrowserStackError):
    """A setting is invalid; `serve` prints one line and exits 2."""

    code = "bad_config"


class StartupError(BrowserStackError):
    """`serve` could not start (an address taken, a socket path refused); it
    prints one line naming what failed and exits 4."""

    code = "startup_failed"


class BadRequest(BrowserStackError):
    code = "bad_request"
    status = 400


class Unauthorized(BrowserStackError):
    code = "unauthorized"
    status = 401


class NotFound(BrowserStackError):
    code = "not_found"
    status = 404


class UnknownProgram(NotFound):
    code = "unknown_program"

    def __init__(self, name: str, allowed: Iterable[str]) -> None:
        allowed_list = list(allowed)
        super().__init__(
            f"{name!r} is not one of the browser stack's programs: {', '.join(allowed_list)}",
            program=name,
            allowed=allowed_list,
        )


class StackStopped(BrowserStackError):
    """An ensure was waiting when a stop took the stack down."""

    code = "stopped"
    status = 409


class NotInControl(BrowserStackError):
    """Another sidecar controls this supervisord's stack (claim.py): this one
    only reads. Fields name the holder."""

    code = "not_in_control"
    status = 409


class DisabledByDeployment(BrowserStackError):
    """The gates asked for need a program the deployment turned off with the
    image's own switch (DISABLE_MCP_BROWSER=true, ...): it is never started."""

    code = "disabled_by_deployment"
    status = 409

    def __init__(
        self, gates: Iterable[str], programs: Iterable[str], variables: Iterable[str]
    ) -> None:
        gate_list, program_list, variable_list = sorted(gates), sorted(programs), list(variables)
        super().__init__(
            f"the deployment turned off {', '.join(program_list)} "
            f"({', '.join(f'{v}=true' for v in variable_list)}), which the "
            f"{', '.join(gate_list)} gate{'s' if len(gate_list) > 1 else ''} need"
            f"{'' if len(gate_list) > 1 else 's'}: it is never started",
            gates=gate_list,
            programs=program_list,
            variables=variable_list,
        )


class ProgramFailed(BrowserStackError):
    """A program could not be started or died while starting."""

    code = "program_failed"
    status = 502

    def __init__(
        self,
        program: str,
        message: str,
        *,
        state: str,
        spawnerr: str = "",
        stderr_tail: str = "",
        retryable: bool = True,
        **fields: Any,
    ) -> None:
        # retryable=False: trying again cannot help (not configured, no such file).
        self.retryable = retryable
        super().__init__(
            message,
            program=program,
            state=state,
            spawnerr=spawnerr,
            stderr_tail=stderr_tail,
            **fields,
        )
        self.program = program


class PortInUse(ProgramFailed):
    """Something that is not the program already holds its port or display."""

    code = "port_in_use"

    def __init__(
        self, program: str, message: str, *, state: str, port: int | str, pid: int | None
    ) -> None:
        super().__init__(program, message, state=state, retryable=False, port=port, pid=pid)


class SupervisorUnavailable(BrowserStackError):
    """supervisord does not answer (not running, restarting, wrong socket)."""

    code = "supervisor_unavailable"
    status = 503
    retry_after_s = 2


class SupervisorLate(SupervisorUnavailable):
    """supervisord took the call but did not answer it in time: it is there,
    and busy (a crowded machine) or paused. What it would have said, or done
    with the call, is unknown; asking again may work. A start does not fail on
    it (bringup.py); anything else treats it as unavailable."""


class SupervisorError(BrowserStackError):
    """supervisord answered with a fault we do not expect."""

    code = "supervisor_error"
    status = 502


class ReadinessTimeout(BrowserStackError):
    code = "readiness_timeout"
    status = 504

    def __init__(
        self,
        timeout_s: float,
        pending_gates: Iterable[str],
        pending_programs: Mapping[str, str],
    ) -> None:
        gates = sorted(pending_gates)
        super().__init__(
            f"not ready after {timeout_s:g} s: gates {', '.join(gates)} still waiting on "
            + ", ".join(f"{name} ({why})" for name, why in pending_programs.items()),
            timeout_s=timeout_s,
            pending_gates=gates,
            pending_programs=dict(pending_programs),
        )
