"""Layouts for the doctor's differential tests: the project's own supervisord.d,
read through a main supervisord.conf with an [include] glob, changed one way,
and what the doctor and the real programs make of it.

A `Layout` is files (supervisord.conf, conf.d/*.conf) and the environment the
container starts with. `apply` makes one change to it, in the JSON form of
browser_stack.doctor.edits (what a fix of the doctor says) plus a few kinds only tests
make (remove a section, write a file). Then:

- `run_doctor`: `browser-stack doctor --static --config ... --json` in that
  environment and working directory, as an image build runs it;
- `run_real`: supervisord started on the layout through bin/browser-stack-entrypoint,
  in the same working directory, with the real sidecar (`browser-stack serve`) and
  either stand-ins for the five (tests/integration/standin.py `as`, on PATH under
  the real names) or the real programs; then an ensure through the sidecar, as a
  browser tool would, and what came of it.

Every process started carries local_stack's marker (the layout's root) in its
environment, and `run_real` kills and names whatever outlives supervisord.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from scripts import local_stack

from ..helpers import REPO, free_ports

ENTRYPOINT = REPO / "bin" / "browser-stack-entrypoint"
SUPERVISORD_D = REPO / "supervisord.d"
STANDIN = Path(__file__).resolve().parent / "standin.py"
FIVE = ("tigervnc", "openbox", "browser", "mcp-server-browser", "websocat")
STANDIN_NAMES = ("Xvnc", "openbox", "chromium", "mcp-server-browser", "websocat")
# Displays for layouts that run the real Xvnc (its socket is always under
# /tmp/.X11-unix): far above the ones people and the rest of the e2e tier use.
REAL_DISPLAYS = range(300, 350)
MAIN_CONF = """\
[unix_http_server]
file=%(here)s/supervisor.sock

[supervisord]
nodaemon=true
logfile=%(here)s/supervisord.log
pidfile=%(here)s/supervisord.pid
childlogdir=%(here)s/log

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[include]
files = conf.d/*.conf
"""
# Short deadlines for the sidecar: a layout that does not come up should say so soon.
SIDECAR_ENV = {
    "BROWSER_STACK_ENSURE_TIMEOUT": "12",
    "BROWSER_STACK_READY_GRACE": "6",
    "BROWSER_STACK_STOP_TIMEOUT": "10",
}
_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_OPTION = re.compile(r"^([^\s=:;#][^=:]*?)\s*[=:]")
_displays_lock = threading.Lock()
_displays_taken: set[int] = set()


@dataclass
class Layout:
    root: Path
    files: dict[str, str]  # relative to root: supervisord.conf, conf.d/*.conf
    env: dict[str, str]  # the container's environment
    cwd: Path  # where supervisord (and the doctor) run
    real: bool = False  # the five for real, not stand-ins
    spare_ports: list[int] = field(default_factory=list)  # free, for changes that need one

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    def write(self) -> None:
        for name, text in self.files.items():
            path = self.root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")


def _take_display() -> int:
    with _displays_lock:
        for number in REAL_DISPLAYS:
            busy = (
                Path(f"/tmp/.X{number}-lock").exists() or Path(f"/tmp/.X11-unix/X{number}").exists()
            )
            if number not in _displays_taken and not busy:
                _displays_taken.add(number)
                return number
    raise AssertionError("no free X display for a real Xvnc")


def _shim(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)


def base_layout(root: Path, *, lazy: bool = True, real: bool = False) -> Layout:
    """The project's supervisord.d as shipped, on free ports, in lazy mode (as the
    image build checks it) unless lazy=False."""
    root = root.resolve()
    bin_dir = root / "bin"
    bin_dir.mkdir(parents=True)
    for d in ("log", "work"):
        (root / d).mkdir()
    py = shlex.quote(sys.executable)
    _shim(bin_dir / "browser-stack", f'#!/bin/sh\nexec {py} -m browser_stack "$@"\n')
    if not real:
        for name in STANDIN_NAMES:
            standin = shlex.quote(str(STANDIN))
            _shim(bin_dir / name, f'#!/bin/sh\nexec {py} {standin} as {name} "$@"\n')
    vnc, cdp, mcp, ws, listen, *spare = free_ports(12)
    files = {"supervisord.conf": MAIN_CONF}
    for conf in sorted(SUPERVISORD_D.glob("*.conf")):
        files[f"conf.d/{conf.name}"] = conf.read_text(encoding="utf-8")
    path = [str(bin_dir)]
    if real:
        path.append(local_stack.search_path())
    else:
        path.append("/usr/local/bin:/usr/bin:/bin")
    env = {
        "PATH": os.pathsep.join(path),
        "HOME": str(root),
        "LANG": "C.UTF-8",
        local_stack.MARKER: str(root),
        "PYTHONUNBUFFERED": "1",
        "VNC_SERVER_PORT": str(vnc),
        "BROWSER_REMOTE_DEBUGGING_PORT": str(cdp),
        "MCP_SERVER_BROWSER_PORT": str(mcp),
        "WEBSOCKET_PROXY_PORT": str(ws),
        "BROWSER_STACK_LISTEN": f"127.0.0.1:{listen}",
        "BROWSER_STACK_PROFILE_DIR": str(root / "profile"),
        "BROWSER_STACK_LOG_DIR": str(root / "log"),
        **SIDECAR_ENV,
    }
    if lazy:
        env["DISABLE_BROWSER_STACK"] = "true"
    if real:
        env["DISPLAY"] = f":{_take_display()}"
    else:
        env["DISPLAY"] = ":99"
        env["BROWSER_STACK_X11_DIR"] = str(root / ".X11-unix")
    return Layout(root, files, env, root / "work", real, spare)


# --- changing a layout ---------------------------------------------------------------


def _find_section(layout: Layout, section: str) -> tuple[str, list[str], int, int] | None:
    """(file, its lines, header index, end index) of [section]."""
    for name, text in layout.files.items():
        lines = text.splitlines()
        for i, line in enumerate(lines):
            match = _SECTION.match(line)
            if match and match[1].strip() == section:
                end = next(
                    (j for j in range(i + 1, len(lines)) if _SECTION.match(lines[j])), len(lines)
                )
                return name, lines, i, end
    return None


def _option_span(lines: list[str], start: int, end: int, option: str) -> tuple[int, int] | None:
    for i in range(start + 1, end):
        match = _OPTION.match(lines[i])
        if match and match[1].strip().lower() == option.lower():
            j = i + 1
            while j < end and lines[j][:1] in (" ", "\t") and lines[j].strip():
                j += 1
            return i, j
    return None


def get_option(layout: Layout, section: str, option: str) -> str | None:
    found = _find_section(layout, section)
    if found is None:
        return None
    _name, lines, start, end = found
    span = _option_span(lines, start, end, option)
    if span is None:
        return None
    first, last = span
    text = lines[first].split("=", 1)[1] if "=" in lines[first] else lines[first].split(":", 1)[1]
    return " ".join([text.strip(), *(line.strip() for line in lines[first + 1 : last])]).strip()


def set_option(layout: Layout, section: str, option: str, value: str | None) -> None:
    found = _find_section(layout, section)
    if found is None:
        if value is not None:
            layout.files["supervisord.conf"] += f"\n[{section}]\n{option}={value}\n"
        return
    name, lines, start, end = found
    span = _option_span(lines, start, end, option)
    new = [] if value is None else [f"{option}={value}"]
    if span is not None:
        lines[span[0] : span[1]] = new
    else:
        last = end
        while last > start + 1 and (not lines[last - 1].strip() or lines[last - 1][0] in ";#"):
            last -= 1
        lines[last:last] = new
    layout.files[name] = "\n".join(lines) + "\n"


def remove_section(layout: Layout, section: str) -> None:
    found = _find_section(layout, section)
    assert found is not None, section
    name, lines, start, end = found
    del lines[start:end]
    layout.files[name] = "\n".join(lines) + "\n"


def rename_section(layout: Layout, section: str, to: str) -> None:
    found = _find_section(layout, section)
    assert found is not None, section
    name, lines, start, _end = found
    lines[start] = f"[{to}]"
    layout.files[name] = "\n".join(lines) + "\n"


def _ini(value: str) -> str:
    return value.replace("%", "%%")


def set_env(layout: Layout, name: str, value: str | None, where: str) -> None:
    if where == "environment":
        if value is None:
            layout.env.pop(name, None)
        else:
            layout.env[name] = value
        return
    from supervisor.datatypes import dict_of_key_value_pairs  # type: ignore[import-untyped]

    raw = get_option(layout, where, "environment") or ""
    pairs = dict(dict_of_key_value_pairs(raw)) if raw else {}
    if value is None:
        pairs.pop(name, None)
    else:
        pairs[name] = _ini(value)
    text = ",".join(f'{k}="{v}"' for k, v in pairs.items())
    set_option(layout, where, "environment", text or None)


def apply(layout: Layout, edit: Mapping[str, Any]) -> None:
    """One change: an edit of browser_stack.doctor.edits in its JSON form, or one of the
    tests' own (remove-section, append-line, write-file)."""
    kind = edit["edit"]
    if kind == "set-env":
        set_env(layout, edit["name"], edit["value"], edit["where"])
    elif kind == "set-option":
        value = edit["value"]
        set_option(layout, edit["section"], edit["option"], value)
    elif kind == "rename-section":
        rename_section(layout, edit["section"], edit["to"])
    elif kind == "append-args":
        command = get_option(layout, edit["section"], "command")
        assert command is not None, edit
        set_option(
            layout, edit["section"], "command", f"{command} {_ini(shlex.join(edit['args']))}"
        )
    elif kind == "replace-args":
        command = get_option(layout, edit["section"], "command")
        assert command is not None, edit
        old = r"\s+".join(re.escape(_ini(word)) for word in edit["old"])
        new = _ini(shlex.join(edit["new"]))
        changed, count = re.subn(rf"(?<!\S){old}(?!\S)", lambda _m: new, command, count=1)
        assert count == 1, (edit, command)
        set_option(layout, edit["section"], "command", changed)
    elif kind == "append-line":
        found = _find_section(layout, edit["section"])
        assert found is not None, edit
        name, lines, _start, end = found
        lines[end:end] = [edit["line"]]
        layout.files[name] = "\n".join(lines) + "\n"
    elif kind == "remove-section":
        remove_section(layout, edit["section"])
    elif kind == "write-file":
        path = layout.root / edit["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(edit["text"], encoding="utf-8")
        path.chmod(int(edit.get("mode", 0o644)))
    else:
        raise AssertionError(f"unknown edit {edit}")


# --- the doctor --------------------------------------------------------------------------


@dataclass
class DoctorRun:
    code: int
    report: dict[str, Any] | None
    stderr: str

    @property
    def checks(self) -> dict[str, dict[str, Any]]:
        return {c["check"]: c for c in (self.report or {}).get("checks", [])}

    def verdicts(self) -> dict[str, str]:
        return {name: c["verdict"] for name, c in self.checks.items()}

    @property
    def failed(self) -> list[str]:
        return [name for name, verdict in self.verdicts().items() if verdict == "fail"]


def run_doctor(layout: Layout, config: str | None = None) -> DoctorRun:
    layout.write()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "browser_stack",
            "doctor",
            "--json",
            "--static",
            "--config",
            str(layout.conf) if config is None else config,
        ],
        env=layout.env,
        cwd=layout.cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = None
    if done.stdout.strip():
        report = json.loads(done.stdout)
    return DoctorRun(done.returncode, report, done.stderr)


# --- the real thing ---------------------------------------------------------------------


@dataclass
class RealRun:
    """What supervisord and the sidecar made of a layout."""

    refused: str | None = None  # supervisord exited at once: its last words
    sidecar: str = "none"  # answers, or why not (never spawned, exited, ...)
    ensure: int | None = None  # the ensure's HTTP status
    ensure_body: Any = None
    autostarted: tuple[str, ...] = ()  # of the five, spawned before any ensure (lazy)
    lazy: bool = True
    restarted: bool | None = None  # the sidecar came back after a SIGKILL (when asked)
    reached: dict[str, bool] = field(default_factory=dict)  # end to end, stand-ins only
    listening: dict[str, frozenset[int]] = field(default_factory=dict)  # after the ensure
    leftovers: list[str] = field(default_factory=list)
    output: str = ""

    @property
    def problems(self) -> list[str]:
        """Why the layout does not come up as it should (empty: it does)."""
        out = []
        if self.refused is not None:
            return [f"supervisord refused it: {self.refused}"]
        if self.sidecar != "answers":
            return [f"the sidecar: {self.sidecar}"]
        if self.lazy and self.autostarted:
            out.append(f"lazy, but supervisord started {', '.join(self.autostarted)} at boot")
        if self.ensure != 200:
            body = self.ensure_body if isinstance(self.ensure_body, dict) else {}
            out.append(f"ensure answered {self.ensure} {body.get('error')}: {body.get('message')}")
        out += [f"{what} not reached end to end" for what, ok in self.reached.items() if not ok]
        if self.restarted is False:
            out.append("the sidecar did not come back after it was killed")
        return out

    @property
    def up(self) -> bool:
        return not self.problems


def _spawned(output: str) -> list[tuple[str, int]]:
    return [(m[1], int(m[2])) for m in re.finditer(r"spawned: '([^']+)' with pid (\d+)", output)]


def _is_sidecar(name: str, pid: int) -> bool:
    if name == "browser-stack":
        return True
    try:
        cmdline = psutil.Process(pid).cmdline()
    except psutil.Error:
        return False
    return "browser_stack" in " ".join(cmdline) and "serve" in cmdline


def _sidecar_address(pid: int) -> tuple[str, dict[str, str]] | None:
    """The sidecar's base URL and headers, from the environment it really has."""
    try:
        env = psutil.Process(pid).environ()
    except psutil.Error:
        return None
    listen = env.get("BROWSER_STACK_LISTEN", "").strip() or "127.0.0.1:8110"
    token = env.get("BROWSER_STACK_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return f"http://{listen}", headers


def _http(
    url: str, headers: Mapping[str, str], method: str = "GET", body: Any = None, timeout: float = 5
) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers=dict(headers))
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"null")
        except ValueError:
            return exc.code, None


def _answers(base: str, headers: Mapping[str, str]) -> bool:
    try:
        return _http(f"{base}/healthz", headers, timeout=2)[0] == 200
    except (OSError, ValueError):
        return False


LISTEN_SETTLE_S = 10.0


def _listening(pid: int, settle: float = 0.0) -> frozenset[int]:
    """The ports a program's process tree listens on; with `settle`, wait up to that
    long for it to listen on any."""
    deadline = time.monotonic() + settle
    while True:
        ports: set[int] = set()
        try:
            tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        except psutil.Error:
            return frozenset()
        for process in tree:
            with contextlib.suppress(psutil.Error):
                for conn in process.net_connections("inet"):
                    if conn.status == psutil.CONN_LISTEN:
                        ports.add(conn.laddr.port)
        if ports or time.monotonic() >= deadline:
            return frozenset(ports)
        time.sleep(0.2)


def _rfb_through(port: int) -> bool:
    """A VNC client through the WebSocket bridge (a stand-in relays plain TCP)."""
    import socket

    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
            return sock.recv(12).startswith(b"RFB ")
    except OSError:
        return False


def run_real(layout: Layout, *, restart: bool = False, boot_timeout: float = 25) -> RealRun:
    """Boot supervisord on the layout, find the sidecar, ensure, look, shut down."""
    layout.write()
    out_path = layout.root / "supervisord.out"
    lazy = bool(layout.env.get("DISABLE_BROWSER_STACK"))
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [
                str(ENTRYPOINT),
                sys.executable,
                "-m",
                "supervisor.supervisord",
                "-n",
                "-c",
                str(layout.conf),
            ],
            env=layout.env,
            cwd=layout.cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output() -> str:
        return out_path.read_text(encoding="utf-8", errors="replace")

    result = RealRun(lazy=lazy)
    try:
        _observe(layout, proc, output, result, restart, boot_timeout)
    finally:
        result.leftovers = local_stack.stop(layout.root, proc.pid, timeout=40)
        proc.wait()
        result.output = output()[-4000:]
    return result


def _observe(
    layout: Layout,
    proc: subprocess.Popen[bytes],
    output: Callable[[], str],
    result: RealRun,
    restart: bool,
    boot_timeout: float,
) -> None:
    deadline = time.monotonic() + boot_timeout
    started_at: float | None = None
    sidecars: dict[int, str] = {}  # spawned sidecar pid: its program name
    last_spawn = time.monotonic()
    while True:
        text = output()
        if proc.poll() is not None:
            lines = [line for line in text.splitlines() if line.strip()]
            result.refused = " / ".join(lines[-3:]) or f"exit {proc.returncode}"
            return
        now = time.monotonic()
        if started_at is None and "supervisord started with pid" in text:
            started_at = now
        for name, pid in _spawned(text):
            if pid not in sidecars and _is_sidecar(name, pid):
                sidecars[pid] = name
                last_spawn = now
        answering = None
        for pid in sidecars:
            address = _sidecar_address(pid)
            if address is not None and _answers(*address):
                answering = (pid, *address)
        if answering is not None:
            break
        gave_up = {m[1] for m in re.finditer(r"gave up: (\S+) entered FATAL", text)}
        alive = [pid for pid in sidecars if psutil.pid_exists(pid)]
        if set(sidecars.values()) & gave_up:
            result.sidecar = "exited, and supervisord gave up on it"
            return
        if started_at is not None and not sidecars and now > started_at + 5:
            result.sidecar = "never spawned"
            return
        if sidecars and not alive and now > last_spawn + 5:
            result.sidecar = "exited, and supervisord did not start it again"
            return
        if now > deadline:
            result.sidecar = "never answered"
            return
        time.sleep(0.05)
    result.sidecar = "answers"
    pid, base, headers = answering
    names = {name for name, _pid in _spawned(output())}
    result.autostarted = tuple(p for p in FIVE if p in names)
    status, body = _http(f"{base}/v1/browser-stack/ensure", headers, "POST", {}, timeout=60)
    result.ensure, result.ensure_body = status, body
    code, state = _http(f"{base}/v1/browser-stack/status", headers, timeout=10)
    if code == 200 and isinstance(state, dict):
        for name, program in state.get("programs", {}).items():
            if program.get("pid"):
                # A start that did not answer 200 may have met Chromium still on its
                # way up (a loaded machine): give it a while to listen before the
                # verdict reads that it never did.
                settle = LISTEN_SETTLE_S if status != 200 and name == "browser" else 0.0
                result.listening[name] = _listening(int(program["pid"]), settle)
    if status == 200 and not layout.real:
        _end_to_end(layout, body, result)
    if restart:
        result.restarted = _comes_back(pid, output)


def _end_to_end(layout: Layout, ensure: Any, result: RealRun) -> None:
    """What a client does next: noVNC through websocat to Xvnc's banner; the MCP
    server's first tool call reaching CDP (its stand-in marks it)."""
    endpoints = ensure.get("endpoints", {}) if isinstance(ensure, dict) else {}
    ws = endpoints.get("vnc_ws")
    if ws:
        port = int(str(ws).rsplit(":", 1)[1].split("/")[0])
        result.reached["VNC through websocat"] = _rfb_through(port)
    marker = layout.root / "mcp-cdp-ok"
    deadline = time.monotonic() + 5
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    result.reached["CDP from mcp-server-browser"] = marker.exists()


def _comes_back(pid: int, output: Callable[[], str]) -> bool:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        for name, other in _spawned(output()):
            if other != pid and _is_sidecar(name, other):
                address = _sidecar_address(other)
                if address is not None and _answers(*address):
                    return True
        time.sleep(0.1)
    return False


def clear_stale_displays(layout: Layout) -> None:
    """Remove what a real Xvnc left (a lock, a socket) on the displays the layout
    names (`:N` in its files and environment), when the lock's pid is gone: Xvnc
    given two displays leaves the first one's behind."""
    text = " ".join([*layout.files.values(), *layout.env.values()])
    for number in {int(n) for n in re.findall(r"(?<![\w.]):(\d+)\b", text)}:
        lock = Path(f"/tmp/.X{number}-lock")
        try:
            pid = int(lock.read_text().strip())
        except (OSError, ValueError):
            continue
        if psutil.pid_exists(pid):
            continue
        for path in (lock, Path(f"/tmp/.X11-unix/X{number}")):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def release_display(display: str) -> None:
    with _displays_lock:
        _displays_taken.discard(int(display.lstrip(":").split(".")[0]))


# --- running many ------------------------------------------------------------------------


def run_all(jobs: Iterable[Callable[[], Any]], workers: int) -> list[Any]:
    """Run blocking jobs on `workers` threads; results in order, errors raised."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures]


def one_line(texts: Sequence[str]) -> list[str]:
    """Those of `texts` that are not a single line without tabs."""
    return [t for t in texts if "\n" in t or "\t" in t]


def variant(layout: Layout) -> Layout:
    """The same layout (root, ports, paths), to be changed apart from it."""
    return dataclasses.replace(layout, files=dict(layout.files), env=dict(layout.env))


# --- a family's case, both ways ------------------------------------------------------------

Change = Mapping[str, Any]


@dataclass(frozen=True)
class Case:
    """One layout of a family: the base layout with `changes` applied."""

    family: str  # the check the family is about
    name: str
    changes: Callable[[Layout], Sequence[Change]]
    lazy: bool = True
    real: bool = False
    restart: bool = False  # also kill the sidecar and see it come back

    @property
    def id(self) -> str:
        return f"{self.family}: {self.name}"


def env(name: str, value: str | None, where: str = "environment") -> Change:
    return {"edit": "set-env", "name": name, "value": value, "where": where}


def option(section: str, name: str, value: str | None) -> Change:
    return {"edit": "set-option", "section": section, "option": name, "value": value}


def remove(section: str) -> Change:
    return {"edit": "remove-section", "section": section}


def command(program: str, edit: Callable[[list[str]], str]) -> Callable[[Layout], Change]:
    """A change to [program:X]'s command line, from its words."""

    def change(layout: Layout) -> Change:
        words = (get_option(layout, f"program:{program}", "command") or "").split(" ")
        return option(f"program:{program}", "command", edit(words))

    return change


def swap(program: str, old: str, new: Callable[[Layout], str]) -> Callable[[Layout], Change]:
    """[program:X]'s command with `old` (as written there) replaced."""

    def change(layout: Layout) -> Change:
        text = get_option(layout, f"program:{program}", "command") or ""
        assert old in text, (old, text)
        return option(f"program:{program}", "command", text.replace(old, new(layout), 1))

    return change


def case(family: str, name: str, *changes: Change | Callable[[Layout], Change], **kw: bool) -> Case:
    def build(layout: Layout) -> Sequence[Change]:
        return [c(layout) if callable(c) else c for c in changes]

    return Case(family, name, build, **kw)


@dataclass
class Fixed:
    """A failing check's fix, applied: the doctor again, and the real thing
    when the doctor then finds nothing to fail."""

    edits: list[dict[str, Any]]
    doctor: DoctorRun
    real: RealRun | None


@dataclass
class Result:
    case: Case
    layout: Layout
    doctor: DoctorRun
    real: RealRun
    fixes: dict[str, Fixed] = field(default_factory=dict)

    def describe(self) -> str:
        checks = self.doctor.checks
        lines = [f"{self.case.id}: real {'up' if self.real.up else self.real.problems}"]
        lines += [
            f"  {name} {c['verdict']}: {c['saw']} | fix: {c['fix']}"
            for name, c in checks.items()
            if c["verdict"] != "ok"
        ]
        if self.doctor.report is None:
            lines.append(f"  doctor exit {self.doctor.code}: {self.doctor.stderr.strip()}")
        return "\n".join(lines)


def differential(case: Case, root: Path) -> Result:
    layout = base_layout(root, lazy=case.lazy, real=case.real)
    variants = [layout]
    try:
        for change in case.changes(layout):
            apply(layout, change)
        doctor = run_doctor(layout)
        real = run_real(layout, restart=case.restart)
        result = Result(case, layout, doctor, real)
        for name in doctor.failed:
            edits = doctor.checks[name].get("edits") or []
            if not edits:
                continue
            fixed = variant(layout)
            variants.append(fixed)
            for edit in edits:
                apply(fixed, edit)
            after = run_doctor(fixed)
            real_after = None if after.failed else run_real(fixed, restart=case.restart)
            result.fixes[name] = Fixed(edits, after, real_after)
        return result
    finally:
        if layout.real:
            for each in variants:
                clear_stale_displays(each)
            release_display(layout.env["DISPLAY"])


def disagreements(result: Result) -> list[str]:
    """Where the doctor and the real programs part: an ok (no fail) for a layout
    that does not come up, a fail for one that does; a fix that does not make its
    check pass, or brings a failure that was not there; a line that is not one."""
    out = []
    doctor, real = result.doctor, result.real
    if doctor.report is None:
        return [f"the doctor gave no report (exit {doctor.code}): {doctor.stderr.strip()}"]
    if real.up and doctor.failed:
        out.append(f"fail for a layout that comes up: {', '.join(doctor.failed)}")
    if not real.up and not doctor.failed:
        out.append(f"no fail for a layout that does not come up: {'; '.join(real.problems)}")
    lines = [t for c in doctor.checks.values() for t in (c["saw"], c["fix"])]
    out += [f"not one line: {text!r}" for text in one_line(lines)]
    for name, fixed in result.fixes.items():
        after = fixed.doctor.verdicts()
        if after.get(name) == "fail":
            out.append(f"{name}'s fix {fixed.edits} leaves it failing: {fixed.doctor.checks[name]}")
        new = set(fixed.doctor.failed) - set(doctor.failed)
        if new:
            out.append(f"{name}'s fix {fixed.edits} makes {', '.join(sorted(new))} fail")
        if fixed.real is not None and not fixed.real.up:
            out.append(f"{name}'s fix {fixed.edits}: no fail left, but {fixed.real.problems}")
    if real.leftovers:
        out.append(f"processes outlived supervisord: {real.leftovers}")
    return out


def run_selected(
    session_items: Iterable[Any], module: str, root: Path, workers: int
) -> dict[str, Result | BaseException]:
    """Run the cases of `module`'s tests that were selected, `workers` at a time."""
    cases = []
    for item in session_items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if item.module.__name__ == module and isinstance(params.get("case"), Case):
            cases.append(params["case"])

    def one(number: int, case: Case) -> Result | BaseException:
        try:
            return differential(case, root / f"c{number}")
        except Exception as exc:  # reported by the case's own test
            return exc

    done = run_all([lambda n=n, c=c: one(n, c) for n, c in enumerate(cases)], workers)
    return {case.id: result for case, result in zip(cases, done, strict=True)}
