"""The activation proxy against real loopback servers and a hand-written ensure."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from browser_stack.errors import BrowserStackError, ProgramFailed, SupervisorUnavailable
from browser_stack.proxy import ROUTE_GATES, ActivationProxy, Route
from browser_stack.stack import Gate

from ..helpers import until

LOOPBACK = "127.0.0.1"
MiB = 1024 * 1024
GUARD_S = 10.0
T = TypeVar("T")

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class FakeEnsure:
    """Records the gates it is asked for; waits for `release` when set; raises `error`."""

    error: BaseException | None = None
    release: asyncio.Event | None = None
    calls: list[frozenset[Gate]] = field(default_factory=list)
    cancelled: int = 0

    async def __call__(self, gates: frozenset[Gate]) -> None:
        self.calls.append(gates)
        try:
            if self.release is not None:
                await self.release.wait()
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        if self.error is not None:
            raise self.error


@dataclass
class Upstream:
    server: asyncio.Server
    connections: list[int] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.sockets[0].getsockname()[1])


async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while data := await within(reader.read(64 * 1024)):
        writer.write(data)
        await writer.drain()


@contextlib.asynccontextmanager
async def upstream(handler: Handler = echo) -> AsyncIterator[Upstream]:
    up: Upstream

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up.connections.append(1)
        try:
            await handler(reader, writer)
        except ConnectionError:
            pass
        finally:
            writer.close()

    up = Upstream(await asyncio.start_server(handle, LOOPBACK, 0))
    async with up.server:
        yield up


def route(name: str, upstream_port: int) -> Route:
    return Route(name, LOOPBACK, 0, LOOPBACK, upstream_port, ROUTE_GATES[name])


@contextlib.asynccontextmanager
async def running(
    routes: list[Route],
    ensure: FakeEnsure,
    *,
    ensure_timeout_s: float = GUARD_S,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncIterator[ActivationProxy]:
    proxy = ActivationProxy(routes, ensure, ensure_timeout_s=ensure_timeout_s, clock=clock)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.close()


def within(awaitable: Awaitable[T]) -> Awaitable[T]:
    """Guard an await against a hang: a broken proxy fails the test, not the run."""
    return asyncio.wait_for(awaitable, GUARD_S)


async def connect(
    proxy: ActivationProxy, name: str = "cdp"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(LOOPBACK, proxy.ports()[name])


async def test_splices_both_ways_byte_exact_and_counts() -> None:
    payload = os.urandom(8 * MiB)
    ensure = FakeEnsure()
    ticks = iter(range(1, 1_000_000))
    async with (
        upstream() as up,
        running([route("cdp", up.port)], ensure, clock=lambda: float(next(ticks))) as proxy,
    ):
        reader, writer = await connect(proxy)
        received = asyncio.create_task(reader.read(-1))  # until EOF, concurrently
        writer.write(payload)
        await writer.drain()
        await until(lambda: proxy.active_connections() == 1)
        writer.write_eof()  # echo ends on EOF; its close reaches us as EOF
        echoed = await within(received)
        writer.close()
        await until(lambda: proxy.active_connections() == 0)
        stats = proxy.stats()["cdp"]

    assert hashlib.sha256(echoed).digest() == hashlib.sha256(payload).digest()
    assert ensure.calls == [frozenset({Gate.CDP})]
    assert len(up.connections) == 1
    assert (stats.accepted, stats.open_connections, stats.held_connections) == (1, 0, 0)
    assert stats.bytes_up == stats.bytes_down == len(payload)
    assert stats.failed_activations == 0
    assert stats.last_activity is not None and stats.last_activity > 1.0
    assert stats.to_dict()["bytes_up"] == len(payload)


async def test_ensure_gets_only_the_routes_gates() -> None:
    ensure = FakeEnsure()
    async with upstream() as up:
        routes = [route(name, up.port) for name in ("cdp", "mcp", "vnc", "vnc_ws")]
        async with running(routes, ensure) as proxy:
            for name in ("cdp", "mcp", "vnc", "vnc_ws"):
                reader, writer = await connect(proxy, name)
                writer.write(name.encode())
                assert await within(reader.readexactly(len(name))) == name.encode()
                writer.close()
                await writer.wait_closed()
    assert ensure.calls == [
        frozenset({Gate.CDP}),
        frozenset({Gate.MCP}),
        frozenset({Gate.VNC}),
        frozenset({Gate.VNC}),
    ]


async def test_connections_are_held_while_ensure_runs_then_all_served() -> None:
    ensure = FakeEnsure(release=asyncio.Event())
    async with upstream() as up, running([route("cdp", up.port)], ensure) as proxy:
        clients = [await connect(proxy) for _ in range(8)]
        for i, (_, writer) in enumerate(clients):
            writer.write(f"hello {i}\n".encode())
        await until(lambda: len(ensure.calls) == 8)
        held = proxy.stats()["cdp"]
        assert (held.held_connections, held.open_connections) == (8, 8)
        assert up.connections == []  # nothing reaches the program before it is ready
        assert proxy.active_connections() == 8

        assert ensure.release is not None
        ensure.release.set()
        for i, (reader, _) in enumerate(clients):
            assert await within(reader.readline()) == f"hello {i}\n".encode()
        assert proxy.stats()["cdp"].held_connections == 0
        for _, writer in clients:
            writer.close()
        await until(lambda: proxy.active_connections() == 0)
    assert len(up.connections) == 8


async def test_server_speaks_first_needs_no_client_bytes() -> None:
    async def rfb(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")
        await writer.drain()
        assert await within(reader.readexactly(12)) == b"RFB 003.008\n"
        writer.write(b"\x01\x02")
        await writer.drain()

    async with upstream(rfb) as up, running([route("vnc", up.port)], FakeEnsure()) as proxy:
        reader, writer = await connect(proxy, "vnc")
        assert await within(reader.readexactly(12)) == b"RFB 003.008\n"
        writer.write(b"RFB 003.008\n")
        assert await within(reader.readexactly(2)) == b"\x01\x02"
        assert await within(reader.read()) == b""
        writer.close()


async def test_failed_ensure_answers_http_with_503_and_the_reason() -> None:
    error = ProgramFailed("browser", "browser exited: Missing X server", state="FATAL")
    ensure = FakeEnsure(error=error)
    async with upstream() as up, running([route("cdp", up.port)], ensure) as proxy:
        port = proxy.ports()["cdp"]
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://{LOOPBACK}:{port}/json/version") as response,
        ):
            assert response.status == 503
            assert response.headers["Connection"] == "close"
            body = await response.json()
        await until(lambda: proxy.active_connections() == 0)
        stats = proxy.stats()["cdp"]
    assert body["error"] == "program_failed"
    assert body["message"] == "browser exited: Missing X server"
    assert body["program"] == "browser"
    assert stats.failed_activations == 1
    assert up.connections == []


async def test_failed_ensure_closes_a_raw_client_cleanly() -> None:
    ensure = FakeEnsure(error=SupervisorUnavailable("supervisord does not answer"))
    async with upstream() as up, running([route("vnc", up.port)], ensure) as proxy:
        # An RFB client says nothing first; a client of another protocol says
        # something that is not HTTP. Both get a FIN, no bytes, no reset.
        reader, writer = await connect(proxy, "vnc")
        assert await within(reader.read()) == b""
        writer.close()

        reader, writer = await connect(proxy, "vnc")
        writer.write(b"\x00\x01binary hello\r\n")
        assert await within(reader.read()) == b""
        writer.close()
        await until(lambda: proxy.active_connections() == 0)
        assert proxy.stats()["vnc"].failed_activations == 2
    assert up.connections == []


async def test_ensure_deadline_and_unreachable_upstream_become_503() -> None:
    never = FakeEnsure(release=asyncio.Event())
    with socket.socket() as unused:
        unused.bind((LOOPBACK, 0))
        dead_port = unused.getsockname()[1]  # bound, not listening: refuses
        routes = [route("cdp", dead_port)]
        async with running(routes, never, ensure_timeout_s=0.05) as proxy:
            body = await _get_json(proxy.ports()["cdp"])
            assert body["error"] == "readiness_timeout"
            assert never.cancelled == 1
        async with running(routes, FakeEnsure()) as proxy:
            body = await _get_json(proxy.ports()["cdp"])
            assert body["error"] == "upstream_unreachable"
            assert str(dead_port) in str(body["message"])


async def _get_json(port: int) -> dict[str, object]:
    reader, writer = await asyncio.open_connection(LOOPBACK, port)
    writer.write(b"GET /json/version HTTP/1.1\r\nHost: localhost\r\n\r\n")
    answer = await within(reader.read())
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
    return dict(json.loads(body))


async def test_unexpected_ensure_exception_is_refused_not_fatal() -> None:
    ensure = FakeEnsure(error=RuntimeError("bug"))
    async with upstream() as up, running([route("cdp", up.port)], ensure) as proxy:
        body = await _get_json(proxy.ports()["cdp"])
        assert body["error"] == BrowserStackError.code
        assert "bug" in str(body["message"])
        # The listener still serves the next connection.
        ensure.error = None
        reader, writer = await connect(proxy)
        writer.write(b"ping")
        assert await within(reader.readexactly(4)) == b"ping"
        writer.close()


async def test_client_half_close_is_forwarded_and_the_answer_still_arrives() -> None:
    async def count_then_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        data = await within(reader.read())  # until the client's EOF
        writer.write(b"got %d bytes" % len(data))
        await writer.drain()

    # Held while the client sends and half-closes: like `printf ... | nc -N`.
    ensure = FakeEnsure(release=asyncio.Event())
    async with upstream(count_then_answer) as up, running([route("cdp", up.port)], ensure) as p:
        reader, writer = await connect(p)
        writer.write(b"x" * 100_000)  # more than the hold limit: reading pauses
        writer.write_eof()
        await until(lambda: len(ensure.calls) == 1)
        assert ensure.release is not None
        ensure.release.set()
        assert await within(reader.read()) == b"got 100000 bytes"
        writer.close()
        await until(lambda: p.active_connections() == 0)


async def test_upstream_half_close_keeps_the_client_direction() -> None:
    got: list[bytes] = []

    async def banner_then_listen(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        writer.write(b"banner")
        writer.write_eof()
        got.append(await within(reader.read()))

    async with (
        upstream(banner_then_listen) as up,
        running([route("cdp", up.port)], FakeEnsure()) as proxy,
    ):
        reader, writer = await connect(proxy)
        assert await within(reader.read()) == b"banner"  # EOF from the program reached us
        writer.write(b"still talking")
        writer.write_eof()
        await until(lambda: proxy.active_connections() == 0)
        writer.close()
    assert got == [b"still talking"]


async def test_host_header_passes_through_for_cdp_discovery() -> None:
    # Like Chromium: the debugger URL is built from the Host header.
    async def version(request: web.Request) -> web.Response:
        return web.json_response(
            {"webSocketDebuggerUrl": f"ws://{request.host}/devtools/browser/x"}
        )

    app = web.Application()
    app.router.add_get("/json/version", version)
    server = TestServer(app, host=LOOPBACK)
    await server.start_server()
    try:
        async with running([route("cdp", server.port or 0)], FakeEnsure()) as proxy:
            port = proxy.ports()["cdp"]
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://{LOOPBACK}:{port}/json/version") as response,
            ):
                body = await response.json()
    finally:
        await server.close()
    assert body["webSocketDebuggerUrl"] == f"ws://{LOOPBACK}:{port}/devtools/browser/x"


async def test_slow_reader_does_not_make_the_proxy_buffer() -> None:
    total = 64 * MiB
    chunk = os.urandom(MiB)
    sent = [0]

    async def flood(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for _ in range(total // len(chunk)):
            writer.write(chunk)
            await writer.drain()
            sent[0] += len(chunk)
        writer.write_eof()

    async with upstream(flood) as up, running([route("cdp", up.port)], FakeEnsure()) as proxy:
        reader, writer = await connect(proxy)
        # Shrink the client's kernel buffer so the proxy's side fills quickly.
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        most = 0
        for _ in range(200):  # the client does not read for a while
            await asyncio.sleep(0.005)
            most = max(most, proxy.buffered_bytes())
        stalled_at = sent[0]
        assert most < 4 * MiB
        assert stalled_at < total  # the program was slowed, not the proxy's memory grown

        digest = hashlib.sha256()
        received = 0
        while data := await within(reader.read(MiB)):
            digest.update(data)
            received += len(data)
            most = max(most, proxy.buffered_bytes())
        writer.close()
    assert received == total
    assert digest.digest() == hashlib.sha256(chunk * (total // len(chunk))).digest()
    assert most < 4 * MiB


async def test_client_reset_while_held_cancels_its_wait() -> None:
    ensure = FakeEnsure(release=asyncio.Event())
    async with upstream() as up, running([route("cdp", up.port)], ensure) as proxy:
        sock = socket.create_connection((LOOPBACK, proxy.ports()["cdp"]))
        await until(lambda: len(ensure.calls) == 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST
        await until(lambda: proxy.active_connections() == 0)
        assert ensure.cancelled == 1
        assert proxy.stats()["cdp"].held_connections == 0
    assert up.connections == []


async def test_close_ends_live_and_held_connections() -> None:
    ensure = FakeEnsure()
    async with upstream() as up:
        proxy = ActivationProxy([route("cdp", up.port)], ensure, ensure_timeout_s=10)
        await proxy.start()
        port = proxy.ports()["cdp"]
        live_reader, live_writer = await connect(proxy)
        live_writer.write(b"ping")
        assert await within(live_reader.readexactly(4)) == b"ping"
        ensure.release = asyncio.Event()
        held_reader, held_writer = await connect(proxy)
        await until(lambda: len(ensure.calls) == 2)
        assert proxy.active_connections() == 2

        await proxy.close()

        assert await within(live_reader.read()) == b""
        assert await within(held_reader.read()) == b""
        assert proxy.active_connections() == 0
        assert ensure.cancelled == 1
        with pytest.raises(OSError):
            await asyncio.open_connection(LOOPBACK, port)
        live_writer.close()
        held_writer.close()
