"""Transparent activation: public ports that start the stack on first use.

With BROWSER_STACK_ACTIVATION=proxy the sidecar listens on the public CDP, MCP,
VNC and websocket ports and the programs on internal loopback ports. A
connection to a public port is held while `ensure` brings up the gates that
port needs, then spliced to the program both ways until either side closes.
Chromium builds `webSocketDebuggerUrl` from the Host header, so CDP discovery
through the proxy names the public port and needs nothing rewritten.

The splice is two asyncio protocols, not streams: what one side reads is
written to the other side's transport inside the read callback, with no task
switch per chunk (CDP is many small round trips). Backpressure is the
transport's own flow control: when one side's write buffer passes its high-water
mark, reading from the other side pauses until it drains. A slow reader
therefore holds at most one read chunk plus that buffer per direction.

On failure nothing is spliced: a client that speaks HTTP (CDP discovery, MCP's
SSE, a websocket handshake) gets a 503 with the reason as JSON; anything else
(RFB, where the server speaks first) is closed. The proxy only waits for client
bytes on that failure path, so a successful splice is never delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, cast

from browser_stack.errors import BrowserStackError, StartupError
from browser_stack.stack import PORT_GATES, Gate

log = logging.getLogger(__name__)

# Flow control per direction: a side stops being read while the other side's
# write buffer holds more than WRITE_HIGH bytes, and resumes below WRITE_LOW.
WRITE_HIGH = 256 * 1024
WRITE_LOW = 64 * 1024
# What a held connection may read before the stack is up; then it is paused.
HOLD_LIMIT = 64 * 1024
# One read; also what one socket's buffer costs in memory for its whole life.
READ_CHUNK = 64 * 1024
# Failure path only: how long to wait for a client's first line to tell HTTP
# from a server-speaks-first protocol, and to let it read the answer.
PEEK_TIMEOUT_S = 0.05
LINGER_S = 1.0
CONNECT_TIMEOUT_S = 5.0
CLOSE_GRACE_S = 1.0

_HTTP_REQUEST = re.compile(rb"(GET|HEAD|POST|PUT|DELETE|OPTIONS|PATCH|TRACE|CONNECT) \S")

# Which gates each public port needs before its program can answer.
ROUTE_GATES: Mapping[str, frozenset[Gate]] = {
    name: frozenset({gate}) for name, gate in PORT_GATES.items()
}

Ensure = Callable[[frozenset[Gate]], Awaitable[object]]


class ActivationTimeout(BrowserStackError):
    """The proxy's own deadline on ensure passed (a backstop to ensure's own).

    It shares ensure's code and status, not a code of its own: a client of a
    public port waited for the same thing, the stack being ready, and the
    deadline it hit is ensure's (BROWSER_STACK_ENSURE_TIMEOUT) plus a margin."""

    code = "readiness_timeout"


class UpstreamUnreachable(BrowserStackError):
    """The stack said ready but the program's internal port did not accept."""

    code = "upstream_unreachable"


@dataclass(frozen=True)
class Route:
    name: str
    listen_host: str
    listen_port: int  # 0: any free port; `ActivationProxy.ports()` tells which
    upstream_host: str
    upstream_port: int
    gates: frozenset[Gate]


@dataclass
class RouteStats:
    """Counters of one public port. `last_activity` is on the proxy's clock."""

    open_connections: int = 0  # held or spliced, now
    held_connections: int = 0  # of those, waiting for the stack to come up
    accepted: int = 0
    failed_activations: int = 0
    bytes_up: int = 0  # client to program
    bytes_down: int = 0  # program to client
    last_activity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "open_connections": self.open_connections,
            "held_connections": self.held_connections,
            "accepted": self.accepted,
            "failed_activations": self.failed_activations,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "last_activity": self.last_activity,
        }


class ActivationProxy:
    """Listens on each route's public port; see the module docstring.

    `ensure(gates)` is called once per accepted connection with that route's
    gates; it returns when they are ready or raises (a `BrowserStackError`
    carries the reason a refused client is told). Coalescing concurrent calls
    is the caller's business (the controller's ensure is single-flight).
    """

    def __init__(
        self,
        routes: Iterable[Route],
        ensure: Ensure,
        *,
        ensure_timeout_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.routes: tuple[Route, ...] = tuple(routes)
        names = [r.name for r in self.routes]
        if len(set(names)) != len(names):
            raise ValueError(f"route names must be unique: {names}")
        self._ensure = ensure
        self.ensure_timeout_s = ensure_timeout_s
        self.clock = clock
        self._stats = {r.name: RouteStats() for r in self.routes}
        self._servers: dict[str, asyncio.Server] = {}
        self._connections: set[_Connection] = set()
        self._closing = False

    async def start(self) -> None:
        """Bind every public port; on any failure, nothing stays bound."""
        loop = asyncio.get_running_loop()
        try:
            for route in self.routes:
                try:
                    self._servers[route.name] = await loop.create_server(
                        self._protocol_factory(route),
                        route.listen_host,
                        route.listen_port,
                        reuse_address=True,
                    )
                except OSError as exc:
                    raise StartupError(
                        f"the activation proxy cannot listen on {route.listen_host}:"
                        f"{route.listen_port} ({route.name}): {exc.strerror or exc}",
                        address=f"{route.listen_host}:{route.listen_port}",
                    ) from exc
        except BaseException:
            await self.close()
            raise
        for route in self.routes:
            log.info(
                "proxy %s: %s:%d -> %s:%d (gates %s)",
                route.name,
                route.listen_host,
                self.ports()[route.name],
                route.upstream_host,
                route.upstream_port,
                ",".join(sorted(route.gates)),
            )

    def _protocol_factory(self, route: Route) -> Callable[[], asyncio.BaseProtocol]:
        return lambda: _End(_Connection(self, route))

    async def close(self) -> None:
        """Stop listening and end every live connection, within CLOSE_GRACE_S."""
        self._closing = True
        for server in self._servers.values():
            server.close()
        connections = list(self._connections)
        for conn in connections:
            conn.shutdown()
        if connections:
            _, pending = await asyncio.wait([c.done for c in connections], timeout=CLOSE_GRACE_S)
            for conn in connections:
                if not conn.done.done():
                    conn.abort()
            if pending:
                await asyncio.wait(pending, timeout=CLOSE_GRACE_S)
        for server in self._servers.values():
            await server.wait_closed()
        self._servers.clear()

    def ports(self) -> dict[str, int]:
        """The bound public port of each route (useful with listen_port 0)."""
        return {
            name: int(server.sockets[0].getsockname()[1])
            for name, server in self._servers.items()
            if server.sockets
        }

    def stats(self) -> dict[str, RouteStats]:
        """A copy of each route's counters."""
        return {name: replace(s) for name, s in self._stats.items()}

    def active_connections(self) -> int:
        """Connections open now on all routes (held or spliced): idle stop's activity."""
        return sum(s.open_connections for s in self._stats.values())

    def last_activity(self) -> float | None:
        """The latest accept, byte or close on any route, on the proxy's clock."""
        times = [s.last_activity for s in self._stats.values() if s.last_activity is not None]
        return max(times, default=None)

    def buffered_bytes(self) -> int:
        """Bytes the proxy holds in memory now: write buffers and held reads."""
        return sum(c.buffered_bytes() for c in self._connections)


class _End(asyncio.BufferedProtocol):
    """One socket of a connection. Once linked to its peer, what it reads goes
    straight to the peer's transport; before that it is kept in `held`.

    A buffered protocol reads into one buffer per socket, reused: a plain
    protocol gets a fresh 256 KiB bytes object per read, which glibc maps and
    unmaps every time (three more syscalls per chunk, measured with strace).
    What is forwarded is copied out of that buffer: a transport may keep the
    object it is given (Python 3.12's selector transport and uvloop queue it
    as is), and the buffer is overwritten by the next read."""

    def __init__(self, conn: _Connection, *, upstream: bool = False) -> None:
        self.conn = conn
        self.upstream = upstream
        self.transport: asyncio.Transport | None = None
        self.peer: _End | None = None
        self.held = bytearray()
        self.got_eof = False
        self.discard = False  # refused: read and drop until the client closes
        self.lost = False
        self._buffer = memoryview(bytearray(READ_CHUNK))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        # asyncio already sets TCP_NODELAY on TCP transports.
        self.transport.set_write_buffer_limits(high=WRITE_HIGH, low=WRITE_LOW)
        if not self.upstream:
            self.conn.accepted(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        data = self._buffer[:nbytes]
        self.conn.count(self.upstream, len(data))
        peer = self.peer
        if peer is not None and peer.transport is not None:
            peer.transport.write(bytes(data))
        elif not self.discard:
            self.held += data
            if len(self.held) >= HOLD_LIMIT and self.transport is not None:
                self.transport.pause_reading()
            self.conn.wake()

    def eof_received(self) -> bool:
        # A paused-then-resumed transport can report EOF again.
        if not self.got_eof:
            self.got_eof = True
            if self.peer is not None:
                self.peer.send_eof()
                if self.peer.got_eof:
                    self.conn.close()
            else:
                self.conn.wake()
        return True  # keep our write side open: half-close

    def send_eof(self) -> None:
        t = self.transport
        if t is None or t.is_closing():
            return
        if t.can_write_eof():
            t.write_eof()
        else:
            t.close()

    def pause_writing(self) -> None:
        # Our write buffer is full: stop reading what fills it.
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.got_eof:
            peer.transport.pause_reading()

    def resume_writing(self) -> None:
        peer = self.peer
        if peer is not None and peer.transport is not None and not peer.got_eof:
            peer.transport.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.conn.end_lost(self, exc)

    def buffered_bytes(self) -> int:
        t = self.transport
        size = len(self.held)
        if t is not None and not self.lost:
            size += t.get_write_buffer_size()
        return size


class _Connection:
    """One accepted client: held, then spliced or refused."""

    def __init__(self, proxy: ActivationProxy, route: Route) -> None:
        self.proxy = proxy
        self.route = route
        self.stats = proxy._stats[route.name]
        self.client: _End | None = None
        self.upstream: _End | None = None
        self.task: asyncio.Task[None] | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.peername: object = None
        self._wakeup = asyncio.Event()
        self._held = False
        self._activating = False

    # -- events from the ends

    def accepted(self, client: _End) -> None:
        self.client = client
        assert client.transport is not None
        self.peername = client.transport.get_extra_info("peername")
        s = self.stats
        s.accepted += 1
        s.open_connections += 1
        s.held_connections += 1
        s.last_activity = self.proxy.clock()
        self._held = True
        self.proxy._connections.add(self)
        if self.proxy._closing:
            client.transport.abort()
            return
        self._activating = True
        self.task = asyncio.get_running_loop().create_task(
            self._activate(), name=f"proxy-{self.route.name}-{self.peername}"
        )

    def count(self, from_upstream: bool, n: int) -> None:
        s = self.stats
        if from_upstream:
            s.bytes_down += n
        else:
            s.bytes_up += n
        s.last_activity = self.proxy.clock()

    def wake(self) -> None:
        self._wakeup.set()

    def end_lost(self, end: _End, exc: Exception | None) -> None:
        if exc is not None:
            log.debug("proxy %s: %s lost: %r", self.route.name, self.peername, exc)
        self.wake()
        if end is self.client and self._activating and self.task is not None:
            self.task.cancel()  # the client left while held (or while refused)
        # One side gone: let the other flush what it has, then go too. Before
        # the ends are linked, the activation task decides.
        if end.peer is not None and end.peer.transport is not None:
            end.peer.transport.close()
        self._maybe_done()

    # -- lifecycle

    def close(self) -> None:
        for end in (self.client, self.upstream):
            if end is not None and end.transport is not None:
                end.transport.close()

    def abort(self) -> None:
        for end in (self.client, self.upstream):
            if end is not None and end.transport is not None:
                end.transport.abort()

    def shutdown(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
        self.close()

    def buffered_bytes(self) -> int:
        return sum(e.buffered_bytes() for e in (self.client, self.upstream) if e is not None)

    def _unhold(self) -> None:
        if self._held:
            self._held = False
            self.stats.held_connections -= 1

    def _maybe_done(self) -> None:
        ends = [e for e in (self.client, self.upstream) if e is not None]
        if self.done.done() or not all(e.lost for e in ends):
            return
        if self._activating:
            return  # the activation task ends us
        self._unhold()
        self.stats.open_connections -= 1
        self.stats.last_activity = self.proxy.clock()
        self.proxy._connections.discard(self)
        self.done.set_result(None)

    # -- activation

    async def _activate(self) -> None:
        route = self.route
        try:
            try:
                async with asyncio.timeout(self.proxy.ensure_timeout_s):
                    await self.proxy._ensure(route.gates)
            except BrowserStackError as exc:
                error: BrowserStackError = exc
            except TimeoutError:
                error = ActivationTimeout(
                    f"{', '.join(sorted(route.gates))} not ready after "
                    f"{self.proxy.ensure_timeout_s:g} s"
                )
            except Exception as exc:  # an ensure bug must not kill the listener
                log.exception("proxy %s: ensure raised", route.name)
                error = BrowserStackError(f"ensure failed: {exc!r}")
            else:
                try:
                    await self._connect_upstream()
                    return
                except OSError as exc:
                    error = UpstreamUnreachable(
                        f"{route.name} upstream {route.upstream_host}:{route.upstream_port} "
                        f"did not accept: {exc}"
                    )
            await self._refuse(error)
        finally:
            self._activating = False
            self._unhold()
            self._maybe_done()

    async def _connect_upstream(self) -> None:
        route = self.route
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                _, protocol = await loop.create_connection(
                    lambda: _End(self, upstream=True), route.upstream_host, route.upstream_port
                )
        except TimeoutError as exc:
            raise OSError(f"connect timed out after {CONNECT_TIMEOUT_S:g} s") from exc
        upstream = protocol
        client = self.client
        assert client is not None and client.transport is not None
        self.upstream = upstream
        if client.lost or client.transport.is_closing():
            if upstream.transport is not None:
                upstream.transport.close()
            return
        self._unhold()
        client.peer, upstream.peer = upstream, client
        # Resume first: writing what was held may pause the client again.
        client.transport.resume_reading()
        for src in (client, upstream):
            if src.held and src.peer is not None and src.peer.transport is not None:
                src.peer.transport.write(bytes(src.held))
                src.held.clear()
        if upstream.lost:  # closed before we linked: treat it as an EOF-then-close
            client.transport.close()
        for src in (client, upstream):
            if src.got_eof and src.peer is not None:
                src.peer.send_eof()
        if client.got_eof and upstream.got_eof:
            self.close()

    async def _refuse(self, error: BrowserStackError) -> None:
        route = self.route
        self.stats.failed_activations += 1
        log.warning(
            "proxy %s: refused %s: %s: %s", route.name, self.peername, error.code, error.message
        )
        client = self.client
        assert client is not None and client.transport is not None
        if client.lost or client.transport.is_closing():
            return
        transport = client.transport
        if not client.got_eof and b"\n" not in client.held and len(client.held) < HOLD_LIMIT:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PEEK_TIMEOUT_S):
                    while not (client.got_eof or b"\n" in client.held):
                        self._wakeup.clear()
                        await self._wakeup.wait()
        if _HTTP_REQUEST.match(client.held):
            transport.write(_http_503(error))
        # Read and drop what the client still sends: closing with unread bytes
        # would send a reset, and the client could lose the 503.
        client.discard = True
        client.held.clear()
        transport.resume_reading()
        client.send_eof()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(LINGER_S):
                while not (client.got_eof or client.lost):
                    self._wakeup.clear()
                    await self._wakeup.wait()
        transport.close()


def _http_503(error: BrowserStackError) -> bytes:
    body = json.dumps(error.to_dict(), default=str).encode() + b"\n"
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Browser-Stack-Error: {error.code}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode() + body
