"""Just enough of the X11 protocol to ask whether a window manager runs.

An EWMH window manager (openbox) puts _NET_SUPPORTING_WM_CHECK on the root
window. `xprop -root` shows it, but a fork per readiness probe costs CPU while
Chromium starts and milliseconds on every warm check; this asks the X server
directly over its unix socket: connection setup and InternAtom in one write,
then GetProperty on the root window and GetProperty on the window it names.

The second GetProperty is EWMH's own liveness check: the root window keeps the
property after the window manager dies (seen here: openbox killed with SIGKILL,
`xprop -root` still names its window), but the window it names is the window
manager's own and goes with it, so a live manager is one whose window exists
and names itself.

A warm check is one exchange: `WmCheck` remembers the root window, the atom and
the window of its last check that passed, and sends both GetProperty requests
behind the setup in the same write. It trusts their answers only if the setup
and InternAtom replies name the same root and atom (the X server may have been
restarted since); otherwise it asks again step by step.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable

log = logging.getLogger(__name__)

WM_CHECK_ATOM_NAME = b"_NET_SUPPORTING_WM_CHECK"
_INTERN_ATOM = 16
_GET_PROPERTY = 20
_ANY_PROPERTY_TYPE = 0


class X11Error(Exception):
    pass


def _pad(n: int) -> int:
    return (4 - n % 4) % 4


def setup_request() -> bytes:
    # Little-endian, protocol 11.0, no authorization (Xvnc on a local socket).
    return struct.pack("<BxHHHHxx", ord("l"), 11, 0, 0, 0)


def parse_setup_root(head: bytes, data: bytes) -> int:
    """The first screen's root window id from the connection setup reply.

    `head` is the reply's first 8 bytes, `data` the rest (offsets below count
    from its start, as in the protocol's description of the setup reply).
    """
    if head[0] != 1:  # 0 failed, 2 authenticate
        reason = data[: head[1]] if head[0] == 0 else data
        raise X11Error(
            "X server refused the connection: " + reason.decode("latin-1", "replace").strip("\0 \n")
        )
    vendor_len = struct.unpack_from("<H", data, 16)[0]
    formats = data[21]
    offset = 32 + vendor_len + _pad(vendor_len) + 8 * formats
    return int(struct.unpack_from("<I", data, offset)[0])


def intern_atom_request(name: bytes, only_if_exists: bool = True) -> bytes:
    length = 2 + (len(name) + _pad(len(name))) // 4
    return (
        struct.pack("<BBHHxx", _INTERN_ATOM, int(only_if_exists), length, len(name))
        + name
        + b"\0" * _pad(len(name))
    )


def get_property_request(window: int, atom: int) -> bytes:
    return struct.pack("<BxHIIIII", _GET_PROPERTY, 6, window, atom, _ANY_PROPERTY_TYPE, 0, 1)


class _Reader:
    """Exact reads from a non-blocking socket on the running loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
        self._loop = loop
        self._sock = sock
        self._buf = b""

    async def exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = await self._loop.sock_recv(self._sock, 65536)
            if not chunk:
                raise asyncio.IncompleteReadError(self._buf, n)
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    async def answer(self) -> bytes:
        """The next reply, or an error (first byte 0), whole."""
        head = await self.exactly(32)
        if head[0] == 0:
            return head
        extra = struct.unpack_from("<I", head, 4)[0] * 4
        return head + (await self.exactly(extra) if extra else b"")

    async def reply(self) -> bytes:
        answer = await self.answer()
        if answer[0] == 0:
            raise X11Error(f"X error code {answer[1]}")
        return answer


def parse_window_property(reply: bytes) -> int | None:
    """The window id in a GetProperty reply for _NET_SUPPORTING_WM_CHECK, or None
    (also for an X error, e.g. BadWindow: the window is gone)."""
    if reply[0] == 0:
        return None
    fmt = reply[1]
    value_len = struct.unpack_from("<I", reply, 16)[0]
    if fmt != 32 or value_len < 1:
        return None
    return int(struct.unpack_from("<I", reply, 32)[0])


class WmCheck:
    """Asks one X server whether a live EWMH window manager has claimed it."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._last: tuple[int, int, int] | None = None  # root, atom, window

    async def window(self) -> int | None:
        """The running window manager's check window, or None when none has
        claimed the display or the one that did is gone."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, self.socket_path)
            return await self._ask(loop, sock)
        finally:
            sock.close()

    async def _ask(self, loop: asyncio.AbstractEventLoop, sock: socket.socket) -> int | None:
        last, self._last = self._last, None
        # The server reads requests that follow the setup in the same write, and
        # InternAtom needs nothing from the setup reply.
        out = setup_request() + intern_atom_request(WM_CHECK_ATOM_NAME)
        if last is not None:
            out += get_property_request(last[0], last[1]) + get_property_request(last[2], last[1])
        await loop.sock_sendall(sock, out)
        reader = _Reader(loop, sock)
        head = await reader.exactly(8)
        data = await reader.exactly(struct.unpack_from("<H", head, 6)[0] * 4)
        root = parse_setup_root(head, data)
        atom = struct.unpack_from("<I", await reader.reply(), 8)[0]
        if last is not None:
            on_root = parse_window_property(await reader.answer())
            on_window = parse_window_property(await reader.answer())
            if (root, atom) == last[:2]:
                if on_root is None:
                    return None
                if on_root == last[2] == on_window:
                    self._last = last
                    return on_root
            # Another X server, or another window manager: ask step by step.
        if atom == 0:  # nobody ever interned it: no EWMH window manager yet
            return None
        window = await self._property(loop, sock, reader, root, atom)
        if window is None:
            return None
        # The window manager's own window names itself while it lives.
        if await self._property(loop, sock, reader, window, atom) != window:
            return None
        self._last = (root, atom, window)
        return window

    @staticmethod
    async def _property(
        loop: asyncio.AbstractEventLoop,
        sock: socket.socket,
        reader: _Reader,
        window: int,
        atom: int,
    ) -> int | None:
        await loop.sock_sendall(sock, get_property_request(window, atom))
        return parse_window_property(await reader.answer())


# -- following the display and its window manager by events --------------------

_CHANGE_WINDOW_ATTRIBUTES = 2
_CW_EVENT_MASK = 1 << 11
_STRUCTURE_NOTIFY_MASK = 1 << 17
_PROPERTY_CHANGE_MASK = 1 << 22
_DESTROY_NOTIFY = 17
_PROPERTY_NOTIFY = 28
_PROPERTY_DELETED = 1
_BAD_WINDOW = 3


def select_events_request(window: int, mask: int) -> bytes:
    """ChangeWindowAttributes(window, event-mask=mask): this client's events on it."""
    return struct.pack("<BxHIII", _CHANGE_WINDOW_ATTRIBUTES, 4, window, _CW_EVENT_MASK, mask)


class DisplayWatch:
    """One X11 connection held while the display is up: the X server closing it
    means the display is gone, and the window manager's check window being
    destroyed (DestroyNotify), or the root's _NET_SUPPORTING_WM_CHECK deleted
    (PropertyNotify), means the window manager is gone. No polling: the
    connection is idle until the X server has news.

    Each callback is called at most once per follow. A connection that cannot
    be set up (an X server that wants authorization) is logged once and left
    to the liveness checks.
    """

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._display_gone: Callable[[], None] | None = None
        self._wm: tuple[int, Callable[[], None]] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._refused = False

    def follow_display(self, gone: Callable[[], None]) -> None:
        self._display_gone = gone
        self._connect()

    def follow_wm(self, window: int, gone: Callable[[], None]) -> None:
        if self._wm is not None and self._wm[0] == window:
            self._wm = (window, gone)
            return
        self._wm = (window, gone)
        if self._writer is not None:
            self._writer.write(select_events_request(window, _STRUCTURE_NOTIFY_MASK))
        self._connect()

    def forget_display(self) -> None:
        self._display_gone = None

    def forget_wm(self) -> None:
        self._wm = None

    async def close(self) -> None:
        self._display_gone = self._wm = None
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def _connect(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._follow())

    async def _follow(self) -> None:
        try:
            reader, writer = await asyncio.open_unix_connection(self.socket_path)
        except OSError as exc:
            log.warning("cannot follow the display at %s: %s", self.socket_path, exc)
            return
        set_up = False
        try:
            writer.write(setup_request() + intern_atom_request(WM_CHECK_ATOM_NAME))
            head = await reader.readexactly(8)
            data = await reader.readexactly(struct.unpack_from("<H", head, 6)[0] * 4)
            root = parse_setup_root(head, data)
            atom = struct.unpack_from("<I", await reader.readexactly(32), 8)[0]
            writer.write(select_events_request(root, _PROPERTY_CHANGE_MASK))
            if self._wm is not None:
                writer.write(select_events_request(self._wm[0], _STRUCTURE_NOTIFY_MASK))
            self._writer = writer
            set_up = True
            self._refused = False
            while True:
                self._handle(await reader.readexactly(32), root, atom)
        except X11Error as exc:
            if not self._refused:  # once, not on every follow
                log.warning("cannot follow the display at %s: %s", self.socket_path, exc)
            self._refused = True
        except (OSError, asyncio.IncompleteReadError):
            pass  # the X server closed the connection
        finally:
            self._writer = None
            writer.close()
        if set_up and self._display_gone is not None:
            gone, self._display_gone = self._display_gone, None
            gone()

    def _handle(self, packet: bytes, root: int, atom: int) -> None:
        code = packet[0] & 0x7F
        wm = self._wm
        if code == 0:  # an error: BadWindow for the WM's window means it is gone already
            bad = struct.unpack_from("<I", packet, 4)[0]
            if packet[1] == _BAD_WINDOW and wm is not None and bad == wm[0]:
                self._wm_gone(wm)
        elif code == _DESTROY_NOTIFY:
            window = struct.unpack_from("<I", packet, 8)[0]
            if wm is not None and window == wm[0]:
                self._wm_gone(wm)
        elif code == _PROPERTY_NOTIFY:
            window, changed = struct.unpack_from("<II", packet, 4)
            deleted = window == root and changed == atom and packet[16] == _PROPERTY_DELETED
            if deleted and wm is not None:
                self._wm_gone(wm)

    def _wm_gone(self, wm: tuple[int, Callable[[], None]]) -> None:
        if self._wm is wm:
            self._wm = None
            wm[1]()
