"""A real supervisord with stand-in programs, and the real sidecar, in a scratch dir.

`Stack` owns one private supervisord (unix socket, its own config, autostart=false
everywhere) whose five programs are tests/integration/standin.py in the right mode,
and one sidecar (`python -m browser_stack serve`) pointed at it. Ports are free ones
picked per stack and reach supervisord through its environment (%(ENV_X)s in the
generated config) and the sidecar through the AIO variables.

Every process started here carries BROWSER_STACK_IT_RUN=<root> in its environment;
teardown shuts supervisord down, ends the sidecar and fails on anything left over.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import xmlrpc.client
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import psutil
import pytest
from supervisor.xmlrpc import SupervisorTransport  # type: ignore[import-untyped]

from ..helpers import PROGRAMS, Sidecar, free_ports, wait_for

HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standin.py"

DEFAULT_MODES = {
    "tigervnc": "x",
    "openbox": "wm",
    "browser": "cdp",
    "mcp-server-browser": "tcp",
    "websocat": "tcp",
}
PORT_VARS = {
    "tigervnc": "VNC_SERVER_PORT",
    "browser": "BROWSER_REMOTE_DEBUGGING_PORT",
    "mcp-server-browser": "MCP_SERVER_BROWSER_PORT",
    "websocat": "WEBSOCKET_PROXY_PORT",
}
# Small start delays, so a start is really in flight when requests pile up and a
# client of X spawned too early would find no socket.
DEFAULT_DELAYS = {"tigervnc": 0.3, "browser": 0.2, "mcp-server-browser": 0.1}
DISPLAY = ":77"
MARK = "BROWSER_STACK_IT_RUN"
SIDECAR_TIMEOUTS = {
    "BROWSER_STACK_ENSURE_TIMEOUT": "15",
    "BROWSER_STACK_STOP_TIMEOUT": "10",
    "BROWSER_STACK_READY_GRACE": "5",
}


class Stack:
    def __init__(self, root: Path, *, auth: tuple[str, str] | None = None) -> None:
        self.root = root.resolve()
        self.auth = auth
        self.sock = self.root / "supervisor.sock"
        assert len(str(self.sock)) < 100, f"{self.sock}: too long for a unix socket"
        self.conf = self.root / "supervisord.conf"
        self.logdir = self.root / "log"
        self.x11_dir = self.root / ".X11-unix"
        self.starts_log = self.root / "starts.log"
        self.x_log = self.root / "x-at-start.log"
        self.marker = self.root / "wm-marker"
        self.faults = self.root / "faults"
        for d in (self.logdir, self.x11_dir, self.faults):
            d.mkdir(parents=True, exist_ok=True)
        vnc, cdp, mcp, ws, listen = free_ports(5)
        self.ports = {
            "VNC_SERVER_PORT": vnc,
            "BROWSER_REMOTE_DEBUGGING_PORT": cdp,
            "MCP_SERVER_BROWSER_PORT": mcp,
            "WEBSOCKET_PROXY_PORT": ws,
        }
        self.listen = f"127.0.0.1:{listen}"
        self.x_socket = self.x11_dir / f"X{DISPLAY.lstrip(':')}"
        self.config_key: tuple[Any, ...] | None = None
        self.supervisord: subprocess.Popen[bytes] | None = None
        self.sidecar: Sidecar | None = None
        self.extra_sidecars: list[Sidecar] = []
        self._sidecar_runs = 0

    # -- environment ------------------------------------------------------------

    def _common_env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("BROWSER_STACK_", "SUPERVISOR_"))
            and k not in ("DISPLAY", *self.ports)
        }
        env.update({k: str(v) for k, v in self.ports.items()})
        env.update(
            {
                MARK: str(self.root),
                "DISPLAY": DISPLAY,
                "BROWSER_STACK_X11_DIR": str(self.x11_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def supervisord_env(self) -> dict[str, str]:
        env = self._common_env()
        env.update(
            {
                "BROWSER_STACK_IT_PYTHON": sys.executable,
                "BROWSER_STACK_IT_STANDIN": str(STANDIN),
                "BROWSER_STACK_IT_STARTS_LOG": str(self.starts_log),
                "BROWSER_STACK_IT_X_LOG": str(self.x_log),
                "BROWSER_STACK_IT_WM_MARKER": str(self.marker),
                "BROWSER_STACK_IT_FAULTS": str(self.faults),
                "BROWSER_STACK_IT_LOGDIR": str(self.logdir),
            }
        )
        return env

    def sidecar_env(self, **overrides: str | None) -> dict[str, str]:
        env = self._common_env()
        env.update(SIDECAR_TIMEOUTS)
        env.update(
            {
                "SUPERVISOR_SERVER_URL": f"unix://{self.sock}",
                "BROWSER_STACK_LISTEN": self.listen,
                "BROWSER_STACK_IT_WM_MARKER": str(self.marker),
            }
        )
        if self.auth is not None:
            env["SUPERVISOR_USERNAME"], env["SUPERVISOR_PASSWORD"] = self.auth
        for key, value in overrides.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env

    # -- supervisord config -------------------------------------------------------

    def write_config(
        self,
        modes: Mapping[str, str] | None = None,
        delays: Mapping[str, float] | None = None,
        startretries: Mapping[str, int] | None = None,
        omit: frozenset[str] = frozenset(),
    ) -> bool:
        """(Re)write supervisord.conf, without the programs in `omit`; True if it
        differs from what was there."""
        modes = {**DEFAULT_MODES, **(modes or {})}
        delays = {**DEFAULT_DELAYS, **(delays or {})}
        retries = {p: 3 for p in PROGRAMS} | dict(startretries or {})
        configured = [p for p in PROGRAMS if p not in omit]
        key = tuple((p, modes[p], delays.get(p, 0.0), retries[p]) for p in configured)
        auth = ""
        if self.auth is not None:
            auth = f"username={self.auth[0]}\npassword={self.auth[1]}\n"
        parts = [
            f"""\
; written by tests/integration/conftest.py
[unix_http_server]
file=%(ENV_{MARK})s/supervisor.sock
chmod=0700
{auth}
[supervisord]
nodaemon=true
logfile=%(ENV_{MARK})s/supervisord.log
pidfile=%(ENV_{MARK})s/supervisord.pid
childlogdir=%(ENV_BROWSER_STACK_IT_LOGDIR)s
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://%(ENV_{MARK})s/supervisor.sock
{auth}"""
        ]
        for program in configured:
            port = f" --port %(ENV_{PORT_VARS[program]})s" if program in PORT_VARS else ""
            parts.append(
                f"""
[program:{program}]
command=%(ENV_BROWSER_STACK_IT_PYTHON)s %(ENV_BROWSER_STACK_IT_STANDIN)s {modes[program]}
    --program {program} --delay {delays.get(program, 0.0)}{port}
    --x11-dir %(ENV_BROWSER_STACK_X11_DIR)s --display %(ENV_DISPLAY)s
    --marker %(ENV_BROWSER_STACK_IT_WM_MARKER)s
    --starts-log %(ENV_BROWSER_STACK_IT_STARTS_LOG)s --x-log %(ENV_BROWSER_STACK_IT_X_LOG)s
    --fault-file %(ENV_BROWSER_STACK_IT_FAULTS)s/{program}
autostart=false
autorestart=true
startsecs=1
startretries={retries[program]}
stopsignal=TERM
stopwaitsecs=5
stopasgroup=true
killasgroup=true
stdout_logfile=%(ENV_BROWSER_STACK_IT_LOGDIR)s/{program}.out.log
stderr_logfile=%(ENV_BROWSER_STACK_IT_LOGDIR)s/{program}.err.log
"""
            )
        # supervisord's config reader joins continuation lines of a value.
        self.conf.write_text("".join(parts), encoding="utf-8")
        changed = key != self.config_key
        self.config_key = key
        return changed

    def apply_config(self, **changes: Any) -> None:
        """Rewrite the config and have the running supervisord pick it up.

        `update` stops and re-adds every changed program (its state resets to STOPPED).
        """
        self.write_config(**changes)
        self.supervisorctl("reread")
        self.supervisorctl("update")

    def supervisorctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(self.conf), *args],
            env=self.supervisord_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"supervisorctl {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stdout}{result.stderr}"
            )
        return result

    # -- supervisord ----------------------------------------------------------

    def start_supervisord(self) -> None:
        assert self.supervisord is None or self.supervisord.poll() is not None
        if self.config_key is None:
            self.write_config()
        with open(self.root / "supervisord.stdout", "ab") as out:
            self.supervisord = subprocess.Popen(
                [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(self.conf)],
                env=self.supervisord_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = self.supervisord

        def running() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"supervisord exited {proc.returncode}:\n{self.logs()}")
            try:
                return bool(self.rpc("supervisor.getState")["statename"] == "RUNNING")
            except (OSError, xmlrpc.client.ProtocolError):
                return False

        wait_for(running, 20, "supervisord")

    def stop_supervisord(self) -> None:
        """Shut supervisord down (SIGTERM = supervisorctl shutdown) and wait."""
        proc = self.supervisord
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def supervisord_running(self) -> bool:
        return self.supervisord is not None and self.supervisord.poll() is None

    def rpc(self, method: str, *params: Any) -> Any:
        """One XML-RPC call on a fresh connection (closed before returning)."""
        user, password = self.auth if self.auth else (None, None)
        transport = SupervisorTransport(user, password, f"unix://{self.sock}")
        try:
            proxy = xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)
            target: Any = proxy
            for part in method.split("."):
                target = getattr(target, part)
            return target(*params)
        finally:
            transport.close()

    def states(self) -> dict[str, str]:
        return {i["name"]: i["statename"] for i in self.rpc("supervisor.getAllProcessInfo")}

    def states_info(self) -> dict[str, dict[str, Any]]:
        return {i["name"]: dict(i) for i in self.rpc("supervisor.getAllProcessInfo")}

    def info(self, program: str) -> dict[str, Any]:
        return dict(self.rpc("supervisor.getProcessInfo", program))

    def wait_state(self, program: str, state: str, timeout: float = 20) -> None:
        wait_for(
            lambda: self.info(program)["statename"] == state,
            timeout,
            f"{program} to be {state}",
        )

    def logs(self) -> str:
        out = []
        for f in (self.root / "supervisord.stdout", self.root / "supervisord.log"):
            if f.exists():
                lines = f.read_text(encoding="utf-8", errors="replace").splitlines()[-30:]
                out.append(f"--- {f}\n" + "\n".join(lines))
        return "\n".join(out)

    # -- sidecar ----------------------------------------------------------------

    def start_sidecar(self, **env_overrides: str | None) -> Sidecar:
        self._sidecar_runs += 1
        return Sidecar(
            self.sidecar_env(**env_overrides),
            self.root / f"sidecar-{self._sidecar_runs}.out",
        )

    def other_sidecar(self, **env_overrides: str | None) -> Sidecar:
        """A sidecar with other settings in place of the stack's own (one
        sidecar controls a supervisord); the next reset() ends it and starts the
        stack's own again."""
        if self.sidecar is not None:
            self.sidecar.terminate()
        sidecar = self.start_sidecar(**env_overrides)
        self.extra_sidecars.append(sidecar)
        return sidecar

    def restart_sidecar(self, *, hard: bool = True) -> Sidecar:
        assert self.sidecar is not None
        if hard:
            self.sidecar.kill()
        else:
            self.sidecar.terminate()
        self.sidecar = self.start_sidecar()
        return self.sidecar

    # -- what the stand-ins recorded ----------------------------------------------

    def starts(self) -> Counter[str]:
        return Counter(program for program, _pid in self.start_records())

    def start_records(self) -> list[tuple[str, int]]:
        if not self.starts_log.exists():
            return []
        out = []
        for line in self.starts_log.read_text(encoding="ascii").splitlines():
            program, pid = line.split()
            out.append((program, int(pid)))
        return out

    def x_at_start(self) -> dict[str, list[bool]]:
        seen: dict[str, list[bool]] = {}
        if self.x_log.exists():
            for line in self.x_log.read_text(encoding="ascii").splitlines():
                program, _pid, existed = line.split()
                seen.setdefault(program, []).append(existed == "yes")
        return seen

    def live_standins(self) -> list[tuple[str, int]]:
        """Stand-ins from the starts log that still run (checked by psutil)."""
        live = []
        for program, pid in self.start_records():
            with contextlib.suppress(psutil.Error):
                p = psutil.Process(pid)
                if p.status() != psutil.STATUS_ZOMBIE and str(STANDIN) in p.cmdline():
                    live.append((program, pid))
        return live

    # -- lifecycle ----------------------------------------------------------------

    def reset(self) -> None:
        """Back to a known start: supervisord up with the default config, all five
        STOPPED, no fault files, empty logs of the stand-ins, the sidecar running."""
        for fault in self.faults.iterdir():
            fault.unlink()
        for other in self.extra_sidecars:
            other.terminate()
        self.extra_sidecars.clear()
        if not self.supervisord_running():
            self.write_config()
            self.start_supervisord()
        elif self.write_config():
            self.supervisorctl("reread")
            self.supervisorctl("update")
        # wait=False and poll: supervisord answers a waiting stop on its 1 s tick.
        self.rpc("supervisor.stopAllProcesses", False)
        wait_for(
            lambda: not set(self.states().values()) & {"STARTING", "RUNNING", "STOPPING"},
            30,
            "supervisord to stop the stand-ins",
        )
        for name, state in self.states().items():
            if state not in ("STOPPED",):
                # FATAL/EXITED: a fresh group, as after `update`.
                self.rpc("supervisor.stopProcessGroup", name, True)
                self.rpc("supervisor.removeProcessGroup", name)
                self.rpc("supervisor.addProcessGroup", name)
        assert set(self.states().values()) == {"STOPPED"}, self.states()
        assert not self.live_standins(), self.live_standins()
        # Nothing runs now: clear what a stand-in killed hard could have left.
        for f in (self.starts_log, self.x_log, self.marker, self.x_socket):
            with contextlib.suppress(FileNotFoundError):
                f.unlink()
        if self.sidecar is None or not self.sidecar.alive():
            self.sidecar = self.start_sidecar()

    def processes(self) -> list[psutil.Process]:
        """Live processes started for this stack (not this test process)."""
        found = []
        for p in psutil.process_iter():
            try:
                if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                if p.environ().get(MARK) == str(self.root):
                    found.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def close(self) -> list[str]:
        """Shut everything down; return what had to be killed (empty when clean)."""
        for sidecar in [self.sidecar, *self.extra_sidecars]:
            if sidecar is not None:
                sidecar.terminate()
        self.stop_supervisord()
        deadline = time.monotonic() + 5
        left = self.processes()
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = self.processes()
        killed = []
        for p in left:
            with contextlib.suppress(psutil.Error):
                killed.append(f"{p.pid} {' '.join(p.cmdline())[:120]}")
                p.kill()
        return killed


def make_stack(root: Path, **kwargs: Any) -> Iterator[Stack]:
    stack = Stack(root, **kwargs)
    try:
        stack.write_config()
        stack.start_supervisord()
        stack.sidecar = stack.start_sidecar()
        yield stack
    finally:
        killed = stack.close()
    assert not killed, "processes outlived the teardown:\n" + "\n".join(killed)


@pytest.fixture(scope="session")
def shared_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    yield from make_stack(tmp_path_factory.mktemp("stack"))


@pytest.fixture
def stack(shared_stack: Stack) -> Stack:
    """The session's stack, reset: supervisord up, all five STOPPED, logs empty."""
    shared_stack.reset()
    return shared_stack


@pytest.fixture
def sidecar(stack: Stack) -> Sidecar:
    assert stack.sidecar is not None
    return stack.sidecar
