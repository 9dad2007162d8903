"""Small stand-ins for the five programs of the browser stack (integration tier).

    python standin.py MODE --program NAME [--delay S] [options]

Modes:
  x       tigervnc: an X server on <x11-dir>/X<display number> (tests/fake_x11.py:
          just enough X11 for the window-manager probe; the root window carries
          _NET_SUPPORTING_WM_CHECK while the marker file exists) and a TCP port
          that sends "RFB 003.008\\n" to each client
  wm      openbox: creates the marker file (the WM "claims" the display) and
          removes it on exit
  cdp     browser: HTTP on --port answering GET /json/version with webSocketDebuggerUrl
  tcp     mcp-server-browser / websocat: a plain TCP listener on --port
  crash   writes one line to stderr and exits 1 at once

Every stand-in appends "<program> <pid>\\n" to --starts-log as it starts, and
"<program> <pid> yes|no\\n" to --x-log (did the X socket exist at that moment?).
If --fault-file exists at start, the stand-in behaves as `crash` whatever its
mode: a fault that can be fixed without touching supervisord's config (which
would reset the program's state on `update`).

--delay sleeps before listening (not before logging the start). SIGTERM (what
supervisord sends) exits cleanly: sockets and the marker file are removed.
Only the standard library (and tests/fake_x11.py) is used, to keep start-up fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import fake_x11

MODES = ("x", "wm", "cdp", "tcp", "crash")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=MODES)
    ap.add_argument("--program", required=True)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--x11-dir", default="")
    ap.add_argument("--display", default="")
    ap.add_argument("--marker", default="")
    ap.add_argument("--starts-log", default="")
    ap.add_argument("--x-log", default="")
    ap.add_argument("--fault-file", default="")
    return ap.parse_args(argv)


def _append(path: str, line: str) -> None:
    if not path:
        return
    # One write on an O_APPEND descriptor: concurrent stand-ins never interleave.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def x_socket_path(x11_dir: str, display: str) -> str:
    number = display.rsplit(":", 1)[-1].split(".")[0]
    return os.path.join(x11_dir, f"X{number}")


async def _serve_x(args: argparse.Namespace) -> list[asyncio.base_events.Server]:
    path = x_socket_path(args.x11_dir, args.display)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # left by a stand-in killed hard

    async def vnc_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"RFB 003.008\n")
        with contextlib.suppress(OSError):
            await writer.drain()
        writer.close()

    vnc = await asyncio.start_server(vnc_client, "127.0.0.1", args.port)
    marker = args.marker

    def wm_window() -> int | None:
        return 0x400001 if marker and os.path.exists(marker) else None

    x = await fake_x11.serve(path, wm_window)
    return [vnc, x]


async def _serve_cdp(args: argparse.Namespace) -> list[asyncio.base_events.Server]:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = await reader.readline()
            host = f"127.0.0.1:{args.port}"
            while True:  # headers
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                if name.strip().lower() == "host":
                    host = value.strip()
            parts = request_line.decode("latin-1").split()
            if len(parts) >= 2 and parts[0] == "GET" and parts[1] == "/json/version":
                status = "200 OK"
                body = json.dumps(
                    {
                        "Browser": "StandIn/1.0",
                        "Protocol-Version": "1.3",
                        "webSocketDebuggerUrl": f"ws://{host}/devtools/browser/stand-in",
                    }
                ).encode()
            else:
                status, body = "404 Not Found", b"{}"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    return [await asyncio.start_server(client, "127.0.0.1", args.port)]


async def _serve_tcp(args: argparse.Namespace) -> list[asyncio.base_events.Server]:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    return [await asyncio.start_server(client, "127.0.0.1", args.port)]


async def _run(args: argparse.Namespace) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    if args.delay > 0:
        await asyncio.sleep(args.delay)
    servers: list[asyncio.base_events.Server] = []
    try:
        if args.mode == "x":
            servers = await _serve_x(args)
        elif args.mode == "cdp":
            servers = await _serve_cdp(args)
        elif args.mode == "tcp":
            servers = await _serve_tcp(args)
        elif args.mode == "wm":
            _append(args.marker, f"{os.getpid()}\n")  # the WM "claims" the display
        await stopping.wait()
    finally:
        for server in servers:
            server.close()
        if args.mode == "wm" and args.marker:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.marker)
        if args.mode == "x":
            with contextlib.suppress(FileNotFoundError):
                os.unlink(x_socket_path(args.x11_dir, args.display))


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    pid = os.getpid()
    _append(args.starts_log, f"{args.program} {pid}\n")
    if args.x_log:
        exists = os.path.exists(x_socket_path(args.x11_dir, args.display))
        _append(args.x_log, f"{args.program} {pid} {'yes' if exists else 'no'}\n")
    if args.mode == "crash" or (args.fault_file and os.path.exists(args.fault_file)):
        sys.stderr.write(f"{args.program} stand-in: crashing on purpose (pid {pid})\n")
        sys.stderr.flush()
        return 1
    asyncio.run(_run(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
