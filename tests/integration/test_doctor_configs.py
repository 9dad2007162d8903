"""The doctor against a real supervisord whose configuration is broken one way.

The configuration is the repo's own: supervisord.d/browser-stack-programs.conf
and supervisord.d/browser-stack.conf, included from a small supervisord.conf,
booted through bin/browser-stack-entrypoint with DISABLE_BROWSER_STACK=true on
free ports. The programs' executables are stand-ins (`sleep`) on supervisord's
PATH: nothing here needs a real Xvnc or Chromium, because the doctor only reads.
Each case edits one thing in the programs file and has supervisord reload it;
then the live and the static doctor must fail that one check, with its fix, and
nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import xmlrpc.client
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from browser_stack import doctor
from browser_stack.doctor.checks import Check, Verdict
from scripts import local_stack

from ..helpers import free_ports, wait_for

REPO = Path(__file__).resolve().parents[2]
ENTRYPOINT = REPO / "bin" / "browser-stack-entrypoint"
PROGRAMS_CONF = REPO / "supervisord.d" / "browser-stack-programs.conf"
SIDECAR_CONF = REPO / "supervisord.d" / "browser-stack.conf"
STANDINS = ("Xvnc", "openbox", "chromium", "mcp-server-browser", "websocat", "browser-stack")
DISPLAY = ":77"

SUPERVISORD_CONF = """[unix_http_server]
file={root}/supervisor.sock
[supervisord]
nodaemon=true
logfile={root}/supervisord.log
pidfile={root}/supervisord.pid
childlogdir={root}/log
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = conf.d/*.conf
"""


@dataclass
class Host:
    root: Path
    env: dict[str, str]  # what the container is started with (and the doctor runs in)
    proc: subprocess.Popen[bytes]

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    def rpc(self, method: str, *params: Any) -> Any:
        return local_stack.rpc(self.root, method, *params)

    def load(self, programs: str) -> None:
        """Write the programs file and have supervisord apply it (reread + update)."""
        (self.root / "conf.d" / "programs.conf").write_text(programs)
        [[added, changed, removed]] = self.rpc("reloadConfig")
        for name in changed + removed:
            self.rpc("stopProcessGroup", name, True)
            self.rpc("removeProcessGroup", name)
        for name in changed + added:
            self.rpc("addProcessGroup", name)

    def live(self) -> list[Check]:
        return list(asyncio.run(doctor.live_report(self.env)).checks)

    def static(self) -> list[Check]:
        return list(doctor.static_report(str(self.conf), self.env).checks)


def boot(root: Path, *, wait_for_cdp: bool = False) -> Host:
    """supervisord on `root`; wait_for_cdp: WAIT_PORTS holds the CDP port."""
    root.mkdir(parents=True, exist_ok=True)
    bin_dir = root / "bin"
    (root / "conf.d").mkdir()
    bin_dir.mkdir()
    for name in STANDINS:
        standin = bin_dir / name
        standin.write_text("#!/bin/sh\nexec sleep 3600\n")
        standin.chmod(0o755)
    (root / "supervisord.conf").write_text(SUPERVISORD_CONF.format(root=root))
    (root / "conf.d" / "programs.conf").write_text(PROGRAMS_CONF.read_text())
    (root / "conf.d" / "browser-stack.conf").write_text(SIDECAR_CONF.read_text())
    vnc, cdp, mcp, ws = free_ports(4)
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "DISABLE_BROWSER_STACK": "true",
        "DISPLAY": DISPLAY,
        "VNC_SERVER_PORT": str(vnc),
        "BROWSER_REMOTE_DEBUGGING_PORT": str(cdp),
        "MCP_SERVER_BROWSER_PORT": str(mcp),
        "WEBSOCKET_PROXY_PORT": str(ws),
        "BROWSER_STACK_X11_DIR": str(root / ".X11-unix"),
        "BROWSER_STACK_PROFILE_DIR": str(root / "profile"),
        "BROWSER_STACK_LOG_DIR": str(root / "log"),
        "BROWSER_STACK_IDLE_TIMEOUT": "300",
    }
    if wait_for_cdp:
        env["WAIT_PORTS"] = f"8079,{cdp}"
    with open(root / "supervisord.out", "wb") as out:
        command = [str(ENTRYPOINT), sys.executable, "-m", "supervisor.supervisord"]
        proc = subprocess.Popen(
            [*command, "-n", "-c", str(root / "supervisord.conf")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    host = Host(root, {**env, "SUPERVISOR_SERVER_URL": f"unix://{root}/supervisor.sock"}, proc)

    def up() -> bool:
        assert proc.poll() is None, (root / "supervisord.out").read_text()
        with contextlib.suppress(OSError, xmlrpc.client.Error):
            return bool(host.rpc("getState")["statename"] == "RUNNING")
        return False

    wait_for(up, 30, "supervisord")
    return host


def shut_down(host: Host) -> None:
    with contextlib.suppress(OSError, xmlrpc.client.Error):
        host.rpc("stopAllProcesses", True)
    host.proc.send_signal(signal.SIGTERM)
    try:
        host.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(host.proc.pid, signal.SIGKILL)
        host.proc.wait()


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Host]:
    running = boot(tmp_path_factory.mktemp("doctor"))
    try:
        yield running
    finally:
        shut_down(running)


def section(name: str, edit: Callable[[str], str]) -> str:
    """The repo's programs file with `edit` applied to [program:name] only."""
    text = PROGRAMS_CONF.read_text()
    start = text.index(f"[program:{name}]")
    end = text.find("\n[program:", start + 1)
    end = len(text) if end < 0 else end + 1
    return text[:start] + edit(text[start:end]) + text[end:]


def failing(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks if c.verdict == Verdict.FAIL}


def test_the_repos_own_configuration_passes(host: Host) -> None:
    host.load(PROGRAMS_CONF.read_text())
    for checks in (host.live(), host.static()):
        assert failing(checks) == {}
        names = {c.name for c in checks if c.verdict == Verdict.OK}
        assert {"programs", "autostart", "browser-stop", "browser-stop-signal"} <= names
        assert {"tigervnc-command", "browser-command", "mcp-command", "executables"} <= names


CASES: dict[str, tuple[Callable[[], str], str, str, str]] = {
    # case: (programs file, the check that fails, in what it saw, in its fix)
    "a program missing": (
        lambda: section("websocat", lambda s: ""),
        "programs",
        "no websocat",
        "add [program:websocat]",
    ),
    "a program renamed": (
        lambda: section("browser", lambda s: s.replace("[program:browser]", "[program:chrome]")),
        "programs",
        "no browser, but [program:chrome] runs chromium",
        "rename [program:chrome] to [program:browser]",
    ),
    "Chromium stopped with TERM": (
        lambda: section("browser", lambda s: s.replace("stopsignal=INT", "stopsignal=TERM")),
        "browser-stop-signal",
        "on SIGTERM Chromium exits without committing its cookie database",
        "set stopsignal=INT in [program:browser]",
    ),
    "Chromium without stopasgroup or killasgroup": (
        lambda: section(
            "browser",
            lambda s: s.replace("stopasgroup=false\n", "").replace("killasgroup=true\n", ""),
        ),
        "browser-stop",
        "killasgroup=false",
        "set killasgroup=true in [program:browser]",
    ),
    "a port that disagrees": (
        lambda: section(
            "browser",
            lambda s: s.replace(
                "--remote-debugging-port=%(ENV_BROWSER_STACK_PROGRAM_CDP_PORT)s",
                "--remote-debugging-port=9333",
            ),
        ),
        "browser-command",
        "--remote-debugging-port 9333, but the sidecar probes",
        "set BROWSER_REMOTE_DEBUGGING_PORT=9333 in the container's environment",
    ),
    "autostart true in lazy mode": (
        lambda: section(
            "openbox",
            lambda s: s.replace("autostart=%(ENV_AUTOSTART_BROWSER_STACK)s", "autostart=true"),
        ),
        "autostart",
        "lazy (DISABLE_BROWSER_STACK=true), but autostart=true for openbox",
        "autostart=%(ENV_AUTOSTART_BROWSER_STACK)s",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_one_thing_broken_fails_one_check(host: Host, case: str) -> None:
    programs, name, saw, fix = CASES[case]
    host.load(programs())
    for mode, checks in (("live", host.live()), ("static", host.static())):
        failed = failing(checks)
        assert list(failed) == [name], (mode, failed)
        assert saw in failed[name].saw, (mode, failed[name])
        assert fix in failed[name].fix, (mode, failed[name])


def test_an_executable_missing(host: Host) -> None:
    host.load(PROGRAMS_CONF.read_text())
    standin = host.root / "bin" / "websocat"
    standin.rename(host.root / "websocat.away")
    try:
        for mode, checks in (("live", host.live()), ("static", host.static())):
            failed = failing(checks)
            assert list(failed) == ["executables"], (mode, failed)
            assert re.search(
                r"^websocat \(websocat\) not found on PATH=", failed["executables"].saw
            )
            assert "install what is missing" in failed["executables"].fix
    finally:
        (host.root / "websocat.away").rename(standin)


def test_wait_ports_with_the_cdp_port(tmp_path: Path) -> None:
    """supervisord booted without the --aio entrypoint's filter (an ENTRYPOINT
    overridden): run.sh would wait for the CDP port, which opens on first use."""
    other = boot(tmp_path / "wait", wait_for_cdp=True)
    try:
        cdp = other.env["BROWSER_REMOTE_DEBUGGING_PORT"]
        failed = failing(other.live())
        assert list(failed) == ["wait-ports"], failed
        assert f"WAIT_PORTS=8079,{cdp} (supervisord's environment" in failed["wait-ports"].saw
        fix = failed["wait-ports"].fix
        assert fix.startswith("set WAIT_PORTS=8079 in the container's environment")
        # Static reads what browser-stack-entrypoint --aio would hand run.sh.
        static = {c.name: c for c in other.static()}
        assert failing(list(static.values())) == {}
        assert "WAIT_PORTS=8079 (as browser-stack-entrypoint" in static["wait-ports"].saw
    finally:
        shut_down(other)
