"""The composition root: from settings to a sidecar that serves.

`create_app` builds the aiohttp application (the handlers are http_api.py's) and,
for the app's lifetime, the real adapters, the idle monitor and the background
work; `run` serves it on a runner and site until a handled signal, as aiohttp
keeps the application apart from the runner that serves it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import gc
import logging
import os
import signal
import socket
import stat
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web

from browser_stack import xlock
from browser_stack.claim import Claim
from browser_stack.config import Settings
from browser_stack.controller import Controller
from browser_stack.errors import StartupError
from browser_stack.events import EventWatch
from browser_stack.http_api import (
    CONTROLLER,
    IDLE,
    MAX_BODY_BYTES,
    METRICS,
    PROXY,
    SETTINGS,
    add_routes,
    middleware,
)
from browser_stack.idle import IdleMonitor, IdlePolicy
from browser_stack.metrics import Metrics
from browser_stack.port_owner import holder_of
from browser_stack.probes import build_probes
from browser_stack.schedstat import run_queue_wait_s
from browser_stack.stack import Gate, Program
from browser_stack.supervisor import XmlRpcSupervisor
from browser_stack.x11 import DisplayWatch

if TYPE_CHECKING:
    # Loaded by _activation_proxy, with BROWSER_STACK_ACTIVATION=proxy only.
    from browser_stack.proxy import ActivationProxy

log = logging.getLogger(__name__)

# SIGTERM: supervisord's stop; SIGINT: Ctrl-C when run by hand.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT)

# The programs' own ports, which the idle monitor counts connections to: set by the
# real parts only (a controller handed in has no ports of ours to watch).
WATCHED_PORTS: web.AppKey[Mapping[str, int]] = web.AppKey("watched_ports")


def create_app(
    settings: Settings, controller: Controller | None = None, metrics: Metrics | None = None
) -> web.Application:
    """The aiohttp application. With no controller, real adapters are wired in
    for the app's lifetime."""
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[middleware])
    app[SETTINGS] = settings
    app[METRICS] = metrics or Metrics()
    app[METRICS].set_mode(settings.lazy, settings.idle_timeout_s)
    if controller is not None:
        app[CONTROLLER] = controller
    else:
        app.cleanup_ctx.append(_real_parts)
    app.cleanup_ctx.append(_background)
    add_routes(app)
    return app


async def _real_parts(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    async with contextlib.AsyncExitStack() as opened:
        # Whatever fails below, what was opened before it is closed.
        supervisor = XmlRpcSupervisor(
            settings.supervisor_url,
            settings.supervisor_username,
            settings.supervisor_password,
            stop_timeout_s=settings.stop_timeout_s,
            on_call=app[METRICS].supervisor_called,
        )
        opened.push_async_callback(supervisor.close)
        session = aiohttp.ClientSession()
        opened.push_async_callback(session.close)
        watch = EventWatch(DisplayWatch(settings.x11_socket))
        opened.push_async_callback(watch.close)
        claim = Claim(settings.supervisor_url, str(settings.listen))
        opened.callback(claim.close)
        controller = Controller(
            supervisor,
            build_probes(settings, session),
            settings,
            watch=watch,
            before_start={Program.TIGERVNC: xlock.hook(settings)},
            port_holder=holder_of,
            cpu_wait=run_queue_wait_s,
            observer=app[METRICS],
            control=claim,
        )
        app[CONTROLLER] = controller
        # Behind the proxy, its stats count the public side, and these catch
        # clients that connect to the programs directly.
        app[WATCHED_PORTS] = settings.program_ports
        not_in_control = await controller.control_problem()
        if not_in_control:
            log.warning("not in control: %s", not_in_control)
        if settings.activation == "proxy":
            proxy = _activation_proxy(settings, controller)
            await proxy.start()
            opened.push_async_callback(proxy.close)
            app[PROXY] = proxy
        problems = await controller.reader.host_problems()
        for reason in problems.reasons:
            # Not fatal: supervisord may come up later. /readyz says the same.
            log.warning("no stack start can work yet: %s", reason)
        yield


def _activation_proxy(settings: Settings, controller: Controller) -> ActivationProxy:
    from browser_stack.proxy import ROUTE_GATES, ActivationProxy, Route

    internal = settings.program_ports
    routes = [
        Route(
            name=name,
            listen_host=settings.proxy_host,
            listen_port=port,
            upstream_host="127.0.0.1",
            upstream_port=internal[name],
            gates=ROUTE_GATES[name],
        )
        for name, port in settings.public_ports.items()
    ]

    async def ensure(gates: frozenset[Gate]) -> object:
        return await controller.ensure(gates, settings.ensure_timeout_s)

    return ActivationProxy(routes, ensure, ensure_timeout_s=settings.ensure_timeout_s + 5)


def _idle_monitor(app: web.Application) -> IdleMonitor:
    """The one idle monitor of an app, over whichever controller it has."""
    settings = app[SETTINGS]
    proxy = app.get(PROXY)
    return IdleMonitor(
        app[CONTROLLER],
        IdlePolicy(
            settings.idle_timeout_s, settings.idle_min_uptime_s, settings.idle_timeout_source
        ),
        app.get(WATCHED_PORTS, {}),
        # With BROWSER_STACK_START=needed a gate's own programs stop when it is
        # idle; with all, the stack is one (the rest would follow straight back).
        per_gate=settings.start == "needed",
        extra_connections=(
            (lambda: {n: s.open_connections for n, s in proxy.stats().items()}) if proxy else None
        ),
        observer=app[METRICS],
    )


async def _background(app: web.Application) -> AsyncIterator[None]:
    """For the app's lifetime: the liveness checks (unless off) and the idle
    monitor (when idle stop is on)."""
    app[IDLE] = _idle_monitor(app)
    work = []
    if app[SETTINGS].liveness_interval_s:
        work.append(app[CONTROLLER].liveness.run())
    if app[IDLE].policy.enabled:
        work.append(app[IDLE].run())
    tasks = [asyncio.create_task(w) for w in work]
    yield
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


def _freeze_what_startup_built() -> None:
    # What startup built lives as long as the process: frozen, it is left out of
    # the cyclic collector's full passes, which otherwise stall the answers under
    # load. A request's garbage is freed by reference counting; a young-generation
    # threshold of 5,000 instead of 700 runs the collector far less often while
    # what cyclic garbage there is (a transport per X11 check) stays small.
    # bench/README.md has the figures.
    gc.collect()
    gc.freeze()
    gc.set_threshold(5_000, 10, 10)


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler()
    if settings.log_format == "json":
        # One JSON object a line, with the structured fields the code logs
        # (program, state, elapsed_ms, event, reason) as keys.
        from pythonjsonlogger.json import JsonFormatter

        handler.setFormatter(
            JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s", timestamp=False)
        )
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)


def run(settings: Settings) -> None:
    """Serve until SIGTERM or SIGINT. Raises StartupError when the sidecar
    cannot start (an address taken, a socket path refused)."""
    configure_logging(settings)
    asyncio.run(_serve(settings))


def claim_unix_path(path: str) -> None:
    """Make way for a unix listener at `path`: remove a socket left by a run that
    is gone (connecting to it is refused), refuse anything else. It must never
    delete a live socket (supervisord's, if the two variables were confused) or
    a file."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as exc:
        raise StartupError(f"BROWSER_STACK_LISTEN=unix:{path}: {exc.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise StartupError(
            f"BROWSER_STACK_LISTEN=unix:{path}: something that is not a socket is there; "
            "choose another path"
        )
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            os.unlink(path)  # nobody listens: a socket left by a run that is gone
            return
        except OSError as exc:
            if exc.errno != errno.EAGAIN:
                raise StartupError(
                    f"BROWSER_STACK_LISTEN=unix:{path}: cannot tell whether a server "
                    f"listens there ({exc.strerror}); choose another path"
                ) from None
    raise StartupError(
        f"BROWSER_STACK_LISTEN=unix:{path}: a server is listening on that socket "
        "(is it supervisord's? SUPERVISOR_SERVER_URL names that one); choose another path"
    )


async def _serve(settings: Settings) -> None:
    runner = web.AppRunner(create_app(settings), handle_signals=False, access_log=None)
    # cleanup also ends whatever a failed setup had started (its client session,
    # the proxy's ports).
    try:
        if settings.listen.path is not None:
            claim_unix_path(settings.listen.path)
        await runner.setup()
        _freeze_what_startup_built()
        site: web.BaseSite
        if settings.listen.path is not None:
            site = web.UnixSite(runner, settings.listen.path)
        else:
            site = web.TCPSite(runner, settings.listen.host, settings.listen.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot listen on BROWSER_STACK_LISTEN={settings.listen}: {exc.strerror or exc}",
                address=str(settings.listen),
            ) from exc
        log.info("listening on %s, supervisord at %s", settings.listen, settings.supervisor_url)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in HANDLED_SIGNALS:
            loop.add_signal_handler(sig, stopping.set)
        await stopping.wait()
        log.info("shutting down")
    finally:
        await runner.cleanup()
