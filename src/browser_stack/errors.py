"""One small exception tree. Each error carries a machine code, an HTTP status
and structured fields; the HTTP layer and the CLI render them, nothing else."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal


@dataclass(frozen=True)
class ErrorCode:
    """One error the sidecar can answer or raise.

    `where`: api, an answer of the HTTP API (the OpenAPI document lists these);
    proxy, the activation proxy's answer on a public port; cli, never an answer
    (`serve` prints it and exits). `client`: the exception browser_stack.client
    raises for it."""

    code: str
    status: int
    meaning: str
    where: Literal["api", "proxy", "cli"] = "api"
    client: str = "ClientError"


# The one table of error codes: the exception classes below take their status
# from it, the HTTP layer its codes for aiohttp's own errors, the client its
# exceptions and openapi.py the error schema and each status's description.
ERROR_CODES: tuple[ErrorCode, ...] = (
    ErrorCode("bad_request", 400, "a bad request body or parameter", client="BadRequest"),
    ErrorCode("unauthorized", 401, "a missing or wrong bearer token", client="Unauthorized"),
    ErrorCode("not_found", 404, "no such route"),
    ErrorCode("unknown_program", 404, "a program name outside the allowlist"),
    ErrorCode("method_not_allowed", 405, "the route does not take this method (see Allow)"),
    ErrorCode(
        "stopped",
        409,
        "a stop took the stack down while this call waited",
        client="StackStopped",
    ),
    ErrorCode(
        "not_in_control",
        409,
        "another sidecar controls this supervisord's stack",
        client="NotInControl",
    ),
    ErrorCode(
        "disabled_by_deployment",
        409,
        "the gates need a program the deployment turned off",
        client="DisabledByDeployment",
    ),
    ErrorCode("body_too_large", 413, "the body is too large"),
    # Any other error aiohttp raises answers with its own status; 400 is the one
    # seen (a request aiohttp cannot read). The client also names a non-JSON
    # error answer (a gateway's page) so.
    ErrorCode("http_error", 400, "another HTTP error, with aiohttp's own status"),
    ErrorCode("program_failed", 502, "a program failed to start", client="ProgramFailed"),
    ErrorCode(
        "port_in_use",
        502,
        "something else holds a program's port or display",
        client="ProgramFailed",
    ),
    ErrorCode(
        "supervisor_error",
        502,
        "supervisord answered with a fault the sidecar does not expect",
        client="ProgramFailed",
    ),
    ErrorCode(
        "supervisor_unavailable",
        503,
        "supervisord does not answer (see Retry-After)",
        client="SupervisorUnavailable",
    ),
    ErrorCode(
        "readiness_timeout",
        504,
        "the gates were not ready before the deadline (the activation proxy's own deadline too)",
        client="ReadinessTimeout",
    ),
    ErrorCode(
        "upstream_unreachable",
        502,
        "the stack said ready but the program's port did not accept",
        where="proxy",
    ),
    ErrorCode("error", 500, "an unexpected error", where="cli"),
    ErrorCode("bad_config", 500, "a setting is invalid: serve exits 2", where="cli"),
    ErrorCode("startup_failed", 500, "serve could not start: it exits 4", where="cli"),
)
ERRORS: dict[str, ErrorCode] = {e.code: e for e in ERROR_CODES}


class BrowserStackError(Exception):
    """Each subclass names its code; its status comes from ERROR_CODES (a code
    missing there fails at import)."""

    code = "error"
    status = 500

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.status = ERRORS[cls.code].status

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


class Unauthorized(BrowserStackError):
    code = "unauthorized"


class NotFound(BrowserStackError):
    code = "not_found"


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


class NotInControl(BrowserStackError):
    """Another sidecar controls this supervisord's stack (claim.py): this one
    only reads. Fields name the holder."""

    code = "not_in_control"


class DisabledByDeployment(BrowserStackError):
    """The gates asked for need a program the deployment turned off with the
    image's own switch (DISABLE_MCP_BROWSER=true, ...): it is never started."""

    code = "disabled_by_deployment"

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
    retry_after_s = 2


class SupervisorLate(SupervisorUnavailable):
    """supervisord took the call but did not answer it in time: it is there,
    and busy (a crowded machine) or paused. What it would have said, or done
    with the call, is unknown; asking again may work. A start does not fail on
    it (bringup.py); anything else treats it as unavailable."""


class SupervisorError(BrowserStackError):
    """supervisord answered with a fault we do not expect."""

    code = "supervisor_error"


class ReadinessTimeout(BrowserStackError):
    code = "readiness_timeout"

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
