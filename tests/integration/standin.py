"""Small stand-ins for the five programs of the browser stack (integration tier).

    python standin.py MODE --program NAME [--delay S] [options]

Modes:
  x       tigervnc: an X server on <x11-dir>/X<display number> (fake_x11.py beside it:
          just enough X11 for the window-manager probe; the root window carries
          _NET_SUPPORTING_WM_CHECK while the marker file exists) and a TCP port
          that sends "RFB 003.008\\n" to each client
  wm      openbox: creates the marker file (the WM "claims" the display) and
          removes it on exit
  cdp     browser: HTTP on --port answering GET /json/version with webSocketDebuggerUrl
  tcp     mcp-server-browser / websocat: a plain TCP listener on --port
  crash   writes one line to stderr and exits 1 at once

    python standin.py as PROGRAM ARG...

runs the stand-in for PROGRAM (Xvnc, openbox, chromium, mcp-server-browser,
websocat) from that program's own command line, in the forms the project's
programs file uses (`-rfbport N`, `--remote-debugging-port=N`, `--port N`,
`ws-l:HOST:PORT tcp:HOST:PORT`): the doctor's differential tests put these on
PATH under the real names. Each needs what the real one needs: openbox and
chromium exit at once when the X socket of their display is missing (the X dir is
BROWSER_STACK_X11_DIR, default /tmp/.X11-unix), chromium when it cannot create
its --user-data-dir. websocat relays each client to its tcp: target (plain TCP,
no WebSocket framing); mcp-server-browser asks its --cdp-endpoint until it
answers and then creates mcp-cdp-ok beside the X dir. The window manager's
marker is wm-N beside the X dir.

Every stand-in appends "<program> <pid>\\n" to --starts-log as it starts, and
"<program> <pid> yes|no\\n" to --x-log (did the X socket exist at that moment?).
If --fault-file exists at start, the stand-in behaves as `crash` whatever its
mode: a fault that can be fixed without touching supervisord's config (which
would reset the program's state on `update`).

--delay sleeps before listening (not before logging the start). SIGTERM (what
supervisord sends) exits cleanly: sockets and the marker file are removed.
Only the standard library (and fake_x11.py beside it) is used, to keep start-up fast.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import urllib.request
from pathlib import Path

# Run as a script, so Python finds fake_x11.py beside it (the script's own folder).
import fake_x11

MODES = ("x", "wm", "cdp", "tcp", "crash")
AS_PROGRAMS = ("Xvnc", "openbox", "chromium", "mcp-server-browser", "websocat")


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
    ap.add_argument("--target", default="", help="host:port a tcp stand-in relays clients to")
    ap.add_argument("--cdp-endpoint", default="", help="a tcp stand-in asks it (mcp)")
    ap.add_argument("--state-dir", default="")
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


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except OSError:
        pass
    finally:
        writer.close()


async def _serve_tcp(args: argparse.Namespace) -> list[asyncio.base_events.Server]:
    async def client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not args.target:
            writer.close()
            return
        host, _, port = args.target.rpartition(":")
        try:
            target_reader, target_writer = await asyncio.open_connection(host, int(port))
        except OSError:
            writer.close()
            return
        await asyncio.gather(_pipe(reader, target_writer), _pipe(target_reader, writer))

    if args.cdp_endpoint:
        asyncio.get_running_loop().create_task(_ask_cdp(args.cdp_endpoint, args.state_dir))
    return [await asyncio.start_server(client, "127.0.0.1", args.port)]


async def _ask_cdp(url: str, state_dir: str) -> None:
    """What mcp-server-browser does on its first tool call: ask the CDP endpoint."""

    def answers() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return "webSocketDebuggerUrl" in json.loads(response.read())
        except (OSError, ValueError):
            return False

    while True:
        if await asyncio.to_thread(answers):
            break
        await asyncio.sleep(0.1)
    await asyncio.to_thread(Path(state_dir, "mcp-cdp-ok").touch)


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


def _last(argv: list[str], pattern: str) -> str | None:
    """The value of the last word matching `pattern` (one group)."""
    values = [m[1] for word in argv if (m := re.fullmatch(pattern, word))]
    return values[-1] if values else None


def _display_number(display: str) -> str | None:
    match = re.fullmatch(r"[^:]*:(\d+)(?:\.\d+)?", display)
    return match[1] if match else None


def as_program(program: str, argv: list[str]) -> list[str] | str:
    """The stand-in's own arguments for `program argv`, or why that program
    would exit at once."""
    x11_dir = os.environ.get("BROWSER_STACK_X11_DIR") or "/tmp/.X11-unix"
    state = os.path.dirname(x11_dir)
    common = ["--program", program, "--x11-dir", x11_dir, "--state-dir", state]
    if program == "Xvnc":
        number = _last(argv, r":(\d+)") or "0"
        rfbport = _last(argv, r"-rfbport=(\d+)")
        for i, word in enumerate(argv[:-1]):
            if word == "-rfbport":
                rfbport = argv[i + 1]
        port = rfbport or str(5900 + int(number))
        marker = os.path.join(state, f"wm-{number}")
        return ["x", *common, "--display", f":{number}", "--port", port, "--marker", marker]
    display = os.environ.get("DISPLAY", "")
    if program == "chromium":
        display = _last(argv, r"--display=(.*)") or display
    if program in ("openbox", "chromium"):
        number = _display_number(display)
        if number is None or not os.path.exists(os.path.join(x11_dir, f"X{number}")):
            return f"{program}: cannot open display {display!r}"
        if program == "openbox":
            return ["wm", *common, "--marker", os.path.join(state, f"wm-{number}")]
        profile = _last(argv, r"--user-data-dir=(.*)")
        try:
            if profile is not None:
                os.makedirs(profile, exist_ok=True)
        except OSError as exc:
            return f"chromium: cannot create the profile {profile!r}: {exc}"
        port = _last(argv, r"--remote-debugging-port=(\d+)")
        return ["cdp", *common, "--port", port] if port else ["wm", *common]
    if program == "mcp-server-browser":
        port = _last(argv, r"--port=(\d+)")
        endpoint = _last(argv, r"--cdp-endpoint=(.*)")
        for i, word in enumerate(argv[:-1]):
            if word == "--port":
                port = argv[i + 1]
            if word == "--cdp-endpoint":
                endpoint = argv[i + 1]
        if port is None:
            return "mcp-server-browser: no --port"
        return ["tcp", *common, "--port", port, "--cdp-endpoint", endpoint or ""]
    if program == "websocat":
        listen = _last(argv, r"ws-l:(?:.*:)?(\d+)")
        target = _last(argv, r"tcp:(.*:\d+)")
        if listen is None:
            return "websocat: no ws-l:HOST:PORT"
        return ["tcp", *common, "--port", listen, "--target", target or ""]
    return f"no stand-in for {program}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["as"] and len(argv) >= 2:
        own = as_program(argv[1], argv[2:])
        if isinstance(own, str):
            sys.stderr.write(own + "\n")
            return 1
        argv = own
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
