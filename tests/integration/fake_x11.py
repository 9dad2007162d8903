"""A tiny X server for tests: answers the connection setup, InternAtom and
GetProperty, which is all the window-manager probe asks.

`wm_window()` is the running window manager's check window (None: none runs);
it names itself. `root_property()` is what the root window's
_NET_SUPPORTING_WM_CHECK says, by default the same; a stale value (a window
manager that died) names a window that no longer exists: GetProperty on it is
a BadWindow error, as on a real X server.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

ROOT = 0x3A1
WM_ATOM = 0x11A
VENDOR = b"fake-x11"


def setup_reply(root: int = ROOT) -> bytes:
    vendor = VENDOR + b"\0" * ((4 - len(VENDOR) % 4) % 4)
    fixed = struct.pack(
        "<IIIIHHBBBBBBBBxxxx",
        0,  # release
        0x200000,  # resource-id-base
        0x1FFFFF,  # resource-id-mask
        0,  # motion-buffer-size
        len(VENDOR),
        0xFFFF,  # maximum-request-length
        1,  # screens
        1,  # pixmap formats
        0,  # image-byte-order
        0,  # bitmap-format-bit-order
        32,  # scanline-unit
        32,  # scanline-pad
        8,  # min-keycode
        255,  # max-keycode
    )
    pixmap_format = struct.pack("<BBBxxxxx", 24, 32, 32)
    screen = struct.pack(
        "<IIIIIHHHHHHIBBBB", root, 0x20, 0, 0, 0, 1280, 720, 0, 0, 1, 1, 0x21, 0, 0, 24, 0
    )
    data = fixed + vendor + pixmap_format + screen
    return struct.pack("<BxHHH", 1, 11, 0, len(data) // 4) + data


def _property_reply(sequence: int, window: int | None) -> bytes:
    if window is None:
        return struct.pack("<BBHIIII12x", 1, 0, sequence, 0, 0, 0, 0)
    return struct.pack("<BBHIIII12xI", 1, 32, sequence, 1, 33, 0, 1, window)


async def serve(
    path: str,
    wm_window: Callable[[], int | None],
    root_property: Callable[[], int | None] | None = None,
    root: int = ROOT,
) -> asyncio.AbstractServer:
    on_root = root_property or wm_window

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(12)
            writer.write(setup_reply(root))
            sequence = 0
            while True:
                header = await reader.readexactly(4)
                opcode = header[0]
                length = struct.unpack_from("<H", header, 2)[0] * 4
                body = await reader.readexactly(length - 4)
                sequence += 1
                if opcode == 16:  # InternAtom, only-if-exists
                    name_len = struct.unpack_from("<H", body, 0)[0]
                    name = body[4 : 4 + name_len]
                    known = name == b"_NET_SUPPORTING_WM_CHECK" and on_root() is not None
                    writer.write(struct.pack("<BxHII20x", 1, sequence, 0, WM_ATOM if known else 0))
                elif opcode == 20:  # GetProperty
                    window = struct.unpack_from("<I", body, 0)[0]
                    if window == root:
                        writer.write(_property_reply(sequence, on_root()))
                    elif window == wm_window():
                        writer.write(_property_reply(sequence, window))
                    else:  # BadWindow
                        writer.write(struct.pack("<BBHI24x", 0, 3, sequence, window))
                else:  # an X error: BadRequest
                    writer.write(struct.pack("<BBH28x", 0, 1, sequence))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    return await asyncio.start_unix_server(handle, path)
