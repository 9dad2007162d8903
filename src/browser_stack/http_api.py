"""The HTTP API: thin handlers over the controller, one error-to-status map.

The handlers find their parts in the app's typed state (the AppKeys below);
server.py builds the app and wires the real parts in."""

from __future__ import annotations

import asyncio
import functools
import hmac
import json
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from browser_stack import contract
from browser_stack.config import Settings
from browser_stack.contract import EnsureBody, LeaseBody, StopBody
from browser_stack.controller import Controller, EnsureResult
from browser_stack.errors import (
    ERRORS,
    BadRequest,
    BrowserStackError,
    SupervisorError,
    SupervisorUnavailable,
    Unauthorized,
)
from browser_stack.idle import IdleMonitor
from browser_stack.metrics import CONTENT_TYPE, Metrics
from browser_stack.openapi import PREFIX, spec
from browser_stack.stack import (
    GATE_PROGRAMS,
    GATES,
    PROGRAMS,
    Gate,
    parse_gates,
    parse_program,
)
from browser_stack.text import status_table

if TYPE_CHECKING:
    # Loaded by server._activation_proxy, with BROWSER_STACK_ACTIVATION=proxy only.
    from browser_stack.proxy import ActivationProxy

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 4096
ALL_GATES = frozenset(GATES)
# The container's and Kubernetes' probes: open whatever the token.
OPEN_PATHS = frozenset({"/healthz", "/readyz"})
# aiohttp's own errors (a route or method it does not have, a body over the
# limit), by status, as the error table names them.
AIOHTTP_CODES = {
    ERRORS[code].status: code for code in ("not_found", "method_not_allowed", "body_too_large")
}
OTHER_HTTP_ERROR = ERRORS["http_error"].code

CONTROLLER = web.AppKey("controller", Controller)
METRICS = web.AppKey("metrics", Metrics)
IDLE = web.AppKey("idle", IdleMonitor)
PROXY: web.AppKey[ActivationProxy] = web.AppKey("proxy")
SETTINGS = web.AppKey("settings", Settings)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(data, status=status, headers=headers, dumps=_dumps)


def _dumps(data: Any) -> str:
    return json.dumps(data, separators=(",", ":"))


def _error_response(error: BrowserStackError) -> web.Response:
    headers = {}
    if isinstance(error, SupervisorUnavailable):
        headers["Retry-After"] = str(error.retry_after_s)
    if isinstance(error, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    return _json(error.to_dict(), status=error.status, headers=headers)


@web.middleware
async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every request: the token where one is set, then our errors as JSON."""
    try:
        _authorize(request)
        return await handler(request)
    except BrowserStackError as error:
        if error.status >= 500:
            log.warning("%s %s -> %d %s", request.method, request.path, error.status, error.message)
        return _error_response(error)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code = AIOHTTP_CODES.get(exc.status, OTHER_HTTP_ERROR)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        return _json({"error": code, "message": exc.reason}, status=exc.status, headers=headers)


def _authorize(request: web.Request) -> None:
    """With BROWSER_STACK_TOKEN set, every endpoint but the probes needs it:
    status and memory show pids and stderr tails, metrics the usage."""
    token = request.app[SETTINGS].token
    if token and request.path not in OPEN_PATHS:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), token.encode()):
            raise Unauthorized("this endpoint needs Authorization: Bearer <BROWSER_STACK_TOKEN>")


async def _read_object(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    if not raw:  # no body at all; whitespace alone is not JSON
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


@dataclass(frozen=True)
class EnsureRequest:
    gates: frozenset[Gate]
    timeout_s: float
    # False: answer 202 at once and start in the background (warm ahead of need).
    wait: bool = True


EMPTY_ENSURE = EnsureBody()


def parse_ensure_body(
    body: dict[str, Any], default_timeout_s: float, default_gates: frozenset[Gate] = ALL_GATES
) -> EnsureRequest:
    """`default_gates`: what an ensure that names no gate waits for (every gate
    the deployment has not turned off)."""
    # The common warm ensure sends no body: every field's default, nothing to parse.
    asked = contract.parse(EnsureBody, body) if body else EMPTY_ENSURE
    return EnsureRequest(
        asked.needs or default_gates,
        default_timeout_s if asked.timeout_s is None else asked.timeout_s,
        asked.wait,
    )


def ensure_body(result: EnsureResult) -> str:
    """The ensure answer: this call's part, then the model's view (its JSON
    written once per change of the view)."""
    return (
        f'{{"ready":true,"cold":{"true" if result.cold else "false"}'
        f',"elapsed_ms":{result.elapsed_ms!r},"needs":{_needs_json(result.gates)}'
        f',"started":{_dumps([str(p) for p in result.started]) if result.started else "[]"}'
        + result.view.json_tail
    )


@functools.cache
def _needs_json(gates: frozenset[Gate]) -> str:
    return _dumps(sorted(gates))


async def ensure(request: web.Request) -> web.Response:
    controller = request.app[CONTROLLER]
    asked = parse_ensure_body(
        await _read_object(request),
        request.app[SETTINGS].ensure_timeout_s,
        # With every gate turned off, the default names them all, and is refused.
        controller.enabled_gates or ALL_GATES,
    )
    if not asked.wait:
        controller.check_gates(asked.gates)  # before the 202: refused, not started
        await controller.check_control()  # likewise
        # The answer goes out first: the start's first steps would delay it.
        accepted = web.Response(
            status=202,
            text=f'{{"accepted":true,"needs":{_needs_json(asked.gates)}}}',
            content_type="application/json",
        )
        await accepted.prepare(request)
        await accepted.write_eof()
        controller.prewarm(asked.gates)
        return accepted
    result = await controller.ensure(asked.gates, asked.timeout_s)
    headers = {
        "X-Browser-Stack-Outcome": "cold" if result.cold else "warm",
        "X-Browser-Stack-Elapsed-Ms": f"{result.elapsed_ms:.2f}",
    }
    return web.Response(text=ensure_body(result), content_type="application/json", headers=headers)


async def gate(request: web.Request) -> web.Response:
    """For nginx `auth_request`: ensure one gate, answer 204 when it is ready.

    nginx lets the original request through on any 2xx; on our errors it answers
    500 itself (auth_request passes on only 401 and 403), and our JSON error body
    is in the sidecar's log line and in the `X-Browser-Stack-Error` header.
    """
    gates = parse_gates([request.match_info["gate"]])
    try:
        result = await request.app[CONTROLLER].ensure(gates, request.app[SETTINGS].ensure_timeout_s)
    except BrowserStackError as error:
        response = _error_response(error)
        response.headers["X-Browser-Stack-Error"] = error.code
        return response
    return web.Response(
        status=204,
        headers={
            "X-Browser-Stack-Outcome": "cold" if result.cold else "warm",
            "X-Browser-Stack-Elapsed-Ms": f"{result.elapsed_ms:.2f}",
        },
    )


async def status(request: web.Request) -> web.Response:
    """Passive. ?format=text: a table for people; ?memory=1 (implied by text):
    each program's memory, which costs a read of every process's smaps."""
    text_format = _query_choice(request, "format", ("json", "text")) == "text"
    with_memory = text_format or _query_choice(request, "memory", ("0", "1")) == "1"
    controller = request.app[CONTROLLER]
    report = await controller.reader.status()
    programs = report.programs
    supervisor: dict[str, Any] = {"reachable": not report.supervisor_error}
    if report.supervisor_error:
        supervisor["message"] = report.supervisor_error
    settings = request.app[SETTINGS]
    payload: dict[str, Any] = {
        "supervisor": supervisor,
        "in_control": controller.in_control(),
        # lazy: the five stay stopped at boot; `switch` is how the deployment said so.
        "mode": {"lazy": settings.lazy, "switch": settings.switch},
        # What the deployment turned off with the image's own switches: never started.
        "disabled": {str(p): name for p, name in settings.disabled.items()},
        "starting": controller.starting,
        "start_mode": settings.start,
        "last_start": controller.last_start(),
        "backoff": controller.backoff(),
        "ready": {g: all(programs[p].ready for p in GATE_PROGRAMS[g]) for g in GATES},
        "programs": {str(p): s.to_dict() for p, s in programs.items()},
        "endpoints": dict(controller.endpoints()),
    }
    idle = request.app.get(IDLE)
    if idle is not None:
        payload["idle"] = idle.describe()
    proxy = request.app.get(PROXY)
    if proxy is not None:
        payload["proxy"] = {name: st.to_dict() for name, st in proxy.stats().items()}
    if with_memory:
        sample = await _memory_report(request, "")
        payload["memory"] = sample["programs"]
    if text_format:
        return web.Response(text=status_table(payload), content_type="text/plain")
    return _json(payload)


def _query_choice(request: web.Request, name: str, allowed: tuple[str, ...]) -> str:
    value = request.query.get(name, allowed[0])
    if value not in allowed:
        raise BadRequest(f"{name} must be one of {', '.join(allowed)}", allowed=list(allowed))
    return value


async def _memory_report(request: web.Request, sample: str) -> dict[str, Any]:
    # The memory module and psutil load with the first report that asks for them.
    from browser_stack import memory

    infos = await request.app[CONTROLLER].reader.refresh()
    pids = {p: info.pid for p, info in infos.items()}
    states = {p: info.state.name for p, info in infos.items()}
    return await asyncio.to_thread(memory.report, pids, states, sample)


async def memory_sample(request: web.Request) -> web.Response:
    sample = request.query.get("sample", "")
    if len(sample) > 100:
        raise BadRequest("sample names are at most 100 characters")
    fmt = _query_choice(request, "format", ("json", "markdown"))
    report = await _memory_report(request, sample)
    if fmt == "markdown":
        from browser_stack import memory

        return web.Response(text=memory.markdown(report) + "\n", content_type="text/markdown")
    return _json(report)


async def metrics_endpoint(request: web.Request) -> web.Response:
    from browser_stack import memory

    metrics = request.app[METRICS]
    controller = request.app[CONTROLLER]
    try:
        await controller.reader.look()
    except (SupervisorUnavailable, SupervisorError):
        infos = None
    else:
        infos = {p: i for p in PROGRAMS if (i := controller.model.info(p)) is not None}
    if infos is not None:
        states = {str(p): int(i.state) for p, i in infos.items()}
        ready = {str(p): controller.model.ready([p]) for p in PROGRAMS}
        pids = {p: i.pid for p, i in infos.items()}
        sample = await asyncio.to_thread(memory.report, pids, {}, "")
        metrics.update_programs(states, ready, sample["programs"])
    proxy = request.app.get(PROXY)
    if proxy is not None:
        metrics.update_proxy({name: st.to_dict() for name, st in proxy.stats().items()})
    return web.Response(body=metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def program_status(request: web.Request) -> web.Response:
    program = parse_program(request.match_info["name"])
    report = await request.app[CONTROLLER].reader.status()
    return _json({"program": str(program), **report.programs[program].to_dict()})


async def stop(request: web.Request) -> web.Response:
    contract.parse(StopBody, await _read_object(request))
    result = await request.app[CONTROLLER].stop()
    return _json(
        {
            "stopped": [str(p) for p in result.stopped],
            "elapsed_ms": result.elapsed_ms,
            "cancelled_start": result.cancelled_start,
        }
    )


async def lease(request: web.Request) -> web.Response:
    """Hold the stack up for ttl_s without a connection (no start: ensure starts)."""
    ttl_s = contract.parse(LeaseBody, await _read_object(request)).ttl_s
    await request.app[CONTROLLER].check_control()  # only the sidecar in control stops
    idle = request.app[IDLE]
    held = idle.lease(ttl_s)
    return _json({"held_s": round(held, 1), "idle_stop": idle.policy.enabled})


async def doctor_report(request: web.Request) -> web.Response:
    """The live doctor for this sidecar's settings: reads only, wakes nothing."""
    from browser_stack import doctor  # and its checks, on the first call only

    report = await doctor.live_report(os.environ, request.app[SETTINGS])
    return _json(report.to_dict())


async def openapi(request: web.Request) -> web.Response:
    return _json(spec())


async def healthz(request: web.Request) -> web.Response:
    """Liveness: the sidecar serves. Says what it knows of supervisord, and is
    200 whatever that is: restarting the sidecar would not mend supervisord."""
    problems = await request.app[CONTROLLER].reader.host_problems()
    supervisor: dict[str, Any] = {"reachable": not problems.unreachable}
    if problems.unreachable:
        supervisor["message"] = problems.unreachable
    return _json({"ok": True, "supervisor": supervisor, "programs": list(PROGRAMS)})


async def readyz(request: web.Request) -> web.Response:
    """Readiness of the sidecar, not of the stack (never wakes it): 200 when
    supervisord answers and has the five programs, and this sidecar controls the
    stack (claim.py), so that an ensure can work."""
    controller = request.app[CONTROLLER]
    problems = await controller.reader.host_problems()
    reasons = problems.reasons
    not_in_control = await controller.control_problem()
    if not_in_control:
        reasons = [*reasons, not_in_control]
    if reasons:
        return _json({"ok": False, "reasons": reasons}, status=503)
    return _json({"ok": True, "reasons": []})


def add_routes(app: web.Application) -> None:
    """Every route of the API, on `app` (server.create_app builds it)."""
    app.router.add_post(f"{PREFIX}/ensure", ensure)
    app.router.add_get(f"{PREFIX}/status", status)
    app.router.add_get(f"{PREFIX}/gate/{{gate}}", gate)
    app.router.add_get(f"{PREFIX}/programs/{{name}}", program_status)
    app.router.add_post(f"{PREFIX}/stop", stop)
    app.router.add_post(f"{PREFIX}/lease", lease)
    app.router.add_get(f"{PREFIX}/openapi.json", openapi)
    app.router.add_get(f"{PREFIX}/memory", memory_sample)
    app.router.add_get(f"{PREFIX}/doctor", doctor_report)
    app.router.add_get("/metrics", metrics_endpoint)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
