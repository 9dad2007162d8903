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
"""

from __future__ import annotations

import asyncio
import contextlib
import struct

WM_CHECK_ATOM_NAME = b"_NET_SUPPORTING_WM_CHECK"
_INTERN_ATOM = 16
_GET_PROPERTY = 20
_ANY_PROPERTY_TYPE = 0
_BAD_WINDOW = 3


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


async def _reply(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readexactly(32)
    if head[0] == 0:
        raise X11Error(f"X error code {head[1]}")
    extra = struct.unpack_from("<I", head, 4)[0] * 4
    return head + (await reader.readexactly(extra) if extra else b"")


def parse_window_property(reply: bytes) -> int | None:
    """The window id in a GetProperty reply for _NET_SUPPORTING_WM_CHECK, or None."""
    fmt = reply[1]
    value_len = struct.unpack_from("<I", reply, 16)[0]
    if fmt != 32 or value_len < 1:
        return None
    return int(struct.unpack_from("<I", reply, 32)[0])


async def _window_property(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, window: int, atom: int
) -> int | None:
    writer.write(get_property_request(window, atom))
    try:
        return parse_window_property(await _reply(reader))
    except X11Error as exc:
        if str(exc) == f"X error code {_BAD_WINDOW}":  # the window is gone
            return None
        raise


async def wm_check_window(socket_path: str) -> int | None:
    """The window id of the running window manager's check window, or None when
    no window manager has claimed the display or the one that did is gone."""
    reader, writer = await asyncio.open_unix_connection(socket_path)
    try:
        # The server reads requests that follow the setup in the same write, and
        # InternAtom needs nothing from the setup reply: one round trip, not two.
        writer.write(setup_request() + intern_atom_request(WM_CHECK_ATOM_NAME))
        head = await reader.readexactly(8)
        data = await reader.readexactly(struct.unpack_from("<H", head, 6)[0] * 4)
        root = parse_setup_root(head, data)
        atom = struct.unpack_from("<I", await _reply(reader), 8)[0]
        if atom == 0:  # nobody ever interned it: no EWMH window manager yet
            return None
        window = await _window_property(reader, writer, root, atom)
        if window is None:
            return None
        # The window manager's own window names itself while it lives.
        if await _window_property(reader, writer, window, atom) != window:
            return None
        return window
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
