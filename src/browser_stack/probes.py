"""Readiness checks. supervisord's RUNNING only means "did not die within
startsecs"; these say whether a program can be used now."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct

import aiohttp

from browser_stack import x11
from browser_stack.config import Settings
from browser_stack.core_types import Probe, ProbeResult
from browser_stack.stack import PORTS, Program

ATTEMPT_TIMEOUT_S = 1.0
RFB_PREFIX = b"RFB "


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def connect_and_close(family: int, address: str | tuple[str, int]) -> None:
    """Open a connection and close it at once, on a bare socket.

    Nothing is read, so no transport or streams: a third of their CPU, and no
    transport left for the cyclic garbage collector (an asyncio transport holds
    a bound method of itself), on every probe of a start or a liveness check.
    """
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
    finally:
        sock.close()


def unix_accepts(path: str) -> Probe:
    async def probe() -> ProbeResult:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                await connect_and_close(socket.AF_UNIX, path)
        except (OSError, TimeoutError) as exc:
            return ProbeResult(False, f"{path}: {exc.__class__.__name__}")
        return ProbeResult(True, f"{path} accepts")

    return probe


def tcp_accepts(host: str, port: int) -> Probe:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET

    async def probe() -> ProbeResult:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                await connect_and_close(family, (host, port))
        except (OSError, TimeoutError) as exc:
            return ProbeResult(False, f"{host}:{port}: {exc.__class__.__name__}")
        return ProbeResult(True, f"{host}:{port} accepts")

    return probe


def rfb_banner(host: str, port: int) -> Probe:
    """The VNC server sends "RFB 003.008\\n" as soon as a client connects."""

    async def probe() -> ProbeResult:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                reader, writer = await asyncio.open_connection(host, port)
                try:
                    banner = await reader.readexactly(12)
                finally:
                    await _close(writer)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            return ProbeResult(False, f"{host}:{port}: no RFB banner ({exc.__class__.__name__})")
        if not banner.startswith(RFB_PREFIX):
            return ProbeResult(False, f"{host}:{port}: not an RFB banner: {banner!r}")
        return ProbeResult(True, banner.decode("ascii", "replace").strip())

    return probe


# sock_diag (linux/sock_diag.h, linux/inet_diag.h): ask the kernel for the TCP
# sockets in one state, here LISTEN only.
NETLINK_SOCK_DIAG = 4
SOCK_DIAG_BY_FAMILY = 20
_NLM_F_REQUEST_DUMP = 0x1 | 0x300
_NLMSG_ERROR = 2
_NLMSG_DONE = 3
_TCPF_LISTEN = 1 << 10
_NLMSG_HEADER = struct.Struct("=IHHII")  # len, type, flags, seq, pid
# inet_diag_req_v2: family, protocol, ext, pad, states, then a zeroed inet_diag_sockid
# (48 bytes; a dump ignores it).
_DIAG_REQUEST = struct.Struct("=BBBxI48x")
# inet_diag_msg: family, state, timer, retrans, sockid (sport big-endian first), expires,
# rqueue, wqueue, uid, inode.
_DIAG_SPORT = struct.Struct(">H")
_DIAG_SPORT_OFFSET = 4
_DIAG_INODE = struct.Struct("=I")
_DIAG_INODE_OFFSET = 68


def listening_inode(port: int, proc_net: str = "/proc/net") -> int | None:
    """The inode of the socket listening on `port` (IPv4 or IPv6), from the kernel.

    Opens no connection to the listener. Asks for listeners alone over netlink
    (sock_diag), which costs about 30 µs however many connections the host has;
    /proc/net/tcp lists every socket, TIME_WAIT included, and a read of it took
    0.7 ms with the port found and 16 ms without it, with the few thousand
    TIME_WAIT sockets that a minute of warm checks leaves here. Where netlink is
    not allowed, it reads /proc/net all the same.
    """
    try:
        return _listening_inode_netlink(port)
    except OSError:
        return _listening_inode_proc(port, proc_net)


def _listening_inode_netlink(port: int) -> int | None:
    with socket.socket(
        socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC, NETLINK_SOCK_DIAG
    ) as nl:
        for family in (socket.AF_INET, socket.AF_INET6):
            request = _DIAG_REQUEST.pack(family, socket.IPPROTO_TCP, 0, _TCPF_LISTEN)
            nl.send(
                _NLMSG_HEADER.pack(
                    _NLMSG_HEADER.size + len(request),
                    SOCK_DIAG_BY_FAMILY,
                    _NLM_F_REQUEST_DUMP,
                    1,
                    0,
                )
                + request
            )
            inode = _read_dump(nl, port)
            if inode is not None:
                return inode
    return None


def _read_dump(nl: socket.socket, port: int) -> int | None:
    found = None
    while True:
        data = nl.recv(65536)
        offset = 0
        while offset + _NLMSG_HEADER.size <= len(data):
            length, kind, _flags, _seq, _pid = _NLMSG_HEADER.unpack_from(data, offset)
            if kind == _NLMSG_DONE:
                return found
            if kind == _NLMSG_ERROR or length < _NLMSG_HEADER.size:
                raise OSError("sock_diag answered with an error")
            body = offset + _NLMSG_HEADER.size
            if (
                found is None
                and _DIAG_SPORT.unpack_from(data, body + _DIAG_SPORT_OFFSET)[0] == port
            ):
                found = int(_DIAG_INODE.unpack_from(data, body + _DIAG_INODE_OFFSET)[0])
            offset += (length + 3) & ~3


def _listening_inode_proc(port: int, proc_net: str) -> int | None:
    for table in ("tcp", "tcp6"):
        try:
            with open(f"{proc_net}/{table}", encoding="ascii") as f:
                next(f, None)
                for line in f:
                    fields = line.split()
                    # local_address is HEX_IP:HEX_PORT; state 0A is LISTEN.
                    if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                        return int(fields[9])
        except (OSError, IndexError, ValueError):
            continue
    return None


def rfb_banner_once(host: str, port: int) -> Probe:
    """An RFB banner check that connects once per listening socket.

    Xvnc counts every connection closed before the security handshake as a
    failed login and, after five in ten seconds, blacklists the address for
    everyone on it (noVNC through websocat included) unless the image passes
    -BlacklistTimeout=0. So once a listener has shown its banner, later checks
    only confirm that the same socket (same inode) still listens.
    """
    banner = rfb_banner(host, port)
    verified: dict[str, int | None] = {"inode": None}

    async def probe() -> ProbeResult:
        inode = listening_inode(port)
        if inode is None:
            return ProbeResult(False, f"{host}:{port}: nothing listens")
        if inode == verified["inode"]:
            return ProbeResult(True, f"{host}:{port}: RFB listener (verified)")
        result = await banner()
        if result.ok:
            verified["inode"] = inode
        return result

    return probe


def cdp_version(session: aiohttp.ClientSession, host: str, port: int) -> Probe:
    """Chromium's DevTools HTTP server answers /json/version once CDP is usable."""
    url = f"http://{host}:{port}/json/version"

    async def probe() -> ProbeResult:
        try:
            async with session.get(
                url, timeout=aiohttp.ClientTimeout(total=ATTEMPT_TIMEOUT_S)
            ) as response:
                if response.status != 200:
                    return ProbeResult(False, f"{url}: HTTP {response.status}")
                body = json.loads(await response.read())
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            return ProbeResult(False, f"{url}: {exc.__class__.__name__}")
        ws_url = body.get("webSocketDebuggerUrl") if isinstance(body, dict) else None
        if not isinstance(ws_url, str) or not ws_url:
            return ProbeResult(False, f"{url}: no webSocketDebuggerUrl in the answer")
        return ProbeResult(
            True,
            str(body.get("Browser", "CDP answers")),
            {"cdp_ws": ws_url, "browser": str(body.get("Browser", ""))},
        )

    return probe


def wm_claimed(socket_path: str) -> Probe:
    """An EWMH window manager sets _NET_SUPPORTING_WM_CHECK on the root window
    (asked over the X socket itself: no fork per probe)."""

    check = x11.WmCheck(socket_path)

    async def probe() -> ProbeResult:
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                window = await check.window()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, x11.X11Error) as exc:
            return ProbeResult(False, f"{socket_path}: {exc.__class__.__name__}: {exc}")
        if window is None:
            return ProbeResult(False, "_NET_SUPPORTING_WM_CHECK: not found, or its window is gone")
        return ProbeResult(
            True, f"_NET_SUPPORTING_WM_CHECK: window id # {window:#x}", {"window": str(window)}
        )

    return probe


def wm_claimed_xprop(xprop: str, display: str) -> Probe:
    """The same question through `xprop -root` (BROWSER_STACK_XPROP), for an X
    server that wants authorization the native check does not send."""
    env = {**os.environ, "DISPLAY": display}

    async def probe() -> ProbeResult:
        try:
            process = await asyncio.create_subprocess_exec(
                xprop,
                "-root",
                "_NET_SUPPORTING_WM_CHECK",
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=env,
            )
        except OSError as exc:
            return ProbeResult(False, f"cannot run {xprop}: {exc}")
        try:
            async with asyncio.timeout(ATTEMPT_TIMEOUT_S):
                out, _ = await process.communicate()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
            return ProbeResult(False, f"{xprop} did not answer on {display}")
        text = out.decode("utf-8", "replace").strip()
        if process.returncode == 0 and "window id #" in text:
            return ProbeResult(True, text)
        return ProbeResult(False, text or f"{xprop} exited {process.returncode}")

    return probe


def all_of(*probes: Probe) -> Probe:
    async def probe() -> ProbeResult:
        details = []
        for each in probes:
            result = await each()
            if not result.ok:
                return result
            details.append(result.detail)
        return ProbeResult(True, "; ".join(details))

    return probe


def build_probes(settings: Settings, session: aiohttp.ClientSession) -> dict[Program, Probe]:
    host = "127.0.0.1"
    ports = {p.program: settings.program_ports[p.name] for p in PORTS}
    return {
        # The X socket first: it is cheap to poll and answers with the RFB port.
        Program.TIGERVNC: all_of(
            unix_accepts(settings.x11_socket), rfb_banner_once(host, ports[Program.TIGERVNC])
        ),
        Program.OPENBOX: (
            wm_claimed_xprop(settings.xprop, settings.display)
            if settings.xprop
            else wm_claimed(settings.x11_socket)
        ),
        Program.BROWSER: cdp_version(session, host, ports[Program.BROWSER]),
        Program.MCP_SERVER_BROWSER: tcp_accepts(host, ports[Program.MCP_SERVER_BROWSER]),
        Program.WEBSOCAT: tcp_accepts(host, ports[Program.WEBSOCAT]),
    }
