"""The doctor's checks, each alone on plain data; how they are put together into
a report; the static reader on small files; the route behind the token."""

from __future__ import annotations

import argparse
import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from browser_stack import doctor
from browser_stack.config import Settings
from browser_stack.core_types import PortHolder
from browser_stack.doctor import DoctorFacts, Report, command, run_checks
from browser_stack.doctor.checks import (
    MAIN_RPCINTERFACE,
    Check,
    Context,
    Executable,
    PathFacts,
    Source,
    Verdict,
    XLock,
    check_autostart,
    check_browser_command,
    check_browser_profile,
    check_browser_stop,
    check_browser_stop_signal,
    check_cgroup,
    check_executables,
    check_exposure,
    check_mcp_command,
    check_pidfd,
    check_programs,
    check_settings,
    check_sidecar_program,
    check_stack_ports,
    check_supervisor_rpc,
    check_supervisord,
    check_tigervnc_command,
    check_wait_ports,
    check_websocat_command,
    check_x_clients_display,
    check_x_lock,
    flag_value,
    keeps_cookies,
    leaves_no_child,
    runs_chromium_itself,
    websocket_ports,
)
from browser_stack.doctor.edits import AppendArgs, RemoveSection, RenameSection, SetEnv, SetOption
from browser_stack.doctor.supervisord_conf import (
    ProgramConfig,
    Server,
    SupervisordConfig,
    UnreadableConfig,
    read_config,
)
from browser_stack.server import create_app

from .fakes import FAST, FakeSupervisor, make_controller

SETTINGS = Settings()
PROXY = Settings.from_env({"BROWSER_STACK_ACTIVATION": "proxy"})
DISPLAY_ENV = {"DISPLAY": ":99"}


def program(name: str, command: str, **changes: object) -> ProgramConfig:
    base = ProgramConfig(
        name=name,
        group=name,
        command=command,
        autostart=False,
        stopsignal="TERM",
        killasgroup=True,
        stopasgroup=True,
        environment={},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# The repo's own programs file, as supervisord reads it with the defaults.
GOOD = {
    "tigervnc": program("tigervnc", "Xvnc :99 -rfbport 5900 -SecurityTypes None -localhost"),
    "openbox": program("openbox", "openbox", environment=DISPLAY_ENV),
    "browser": program(
        "browser",
        "chromium --no-sandbox --remote-debugging-port=9222 "
        "--user-data-dir=/var/lib/browser-stack/profile about:blank",
        stopsignal="INT",
        stopasgroup=False,
        environment=DISPLAY_ENV,
    ),
    "mcp-server-browser": program(
        "mcp-server-browser",
        "mcp-server-browser --host 127.0.0.1 --port 8100 "
        "--cdp-endpoint http://127.0.0.1:9222/json/version",
        environment=DISPLAY_ENV,
    ),
    "websocat": program("websocat", "websocat --binary ws-l:127.0.0.1:6080 tcp:127.0.0.1:5900"),
    "browser-stack": program("browser-stack", "browser-stack serve", autostart=True),
}


def changed(name: str, **changes: object) -> dict[str, ProgramConfig]:
    out = dict(GOOD)
    out[name] = dataclasses.replace(GOOD[name], **changes)  # type: ignore[arg-type]
    return out


def without(name: str) -> dict[str, ProgramConfig]:
    return {k: v for k, v in GOOD.items() if k != name}


def argv(name: str, programs: Mapping[str, ProgramConfig] = GOOD) -> list[list[str]]:
    return [programs[name].argv]


# --- each check alone ------------------------------------------------------------------


def test_settings() -> None:
    assert check_settings(SETTINGS, "").verdict == Verdict.OK
    assert "eager (no switch set), idle stop off (eager mode's default)" in (
        check_settings(SETTINGS, "").saw
    )
    lazy = Settings.from_env(
        {
            "LAZY_START_BROWSER_STACK": "true",
            "BROWSER_STACK_DEPLOYMENT_DISABLED": "DISABLE_MCP_BROWSER",
        }
    )
    saw = check_settings(lazy, "").saw
    assert "lazy (LAZY_START_BROWSER_STACK=true), idle stop after 300 s (lazy mode's default)" in (
        saw
    )
    assert "never started): mcp-server-browser (DISABLE_MCP_BROWSER)" in saw
    bad = check_settings(None, "DISPLAY='x' is not an X display like ':99' or ':99.0'")
    assert bad.verdict == Verdict.FAIL
    assert "DISPLAY='x'" in bad.saw


def test_supervisord() -> None:
    assert check_supervisord(Source("live", "unix:///s", detail="answers")).verdict == Verdict.OK
    down = check_supervisord(Source("live", "unix:///s", error="not reachable", fix="start it"))
    assert (down.verdict, down.saw, down.fix) == (Verdict.FAIL, "not reachable", "start it")
    partial = check_supervisord(Source("live", "u", detail="answers", notes=("files unreadable",)))
    assert partial.verdict == Verdict.WARN
    assert "files unreadable" in partial.saw


def test_programs_all_five_as_their_own_groups() -> None:
    assert check_programs(GOOD).verdict == Verdict.OK


def test_programs_one_missing() -> None:
    check = check_programs(without("websocat"))
    assert check.verdict == Verdict.FAIL
    assert check.saw == "no websocat"
    assert "add [program:websocat]" in check.fix


def test_programs_one_renamed() -> None:
    programs = without("browser")
    programs["chrome"] = dataclasses.replace(GOOD["browser"], name="chrome", group="chrome")
    check = check_programs(programs)
    assert check.verdict == Verdict.FAIL
    assert "no browser, but [program:chrome] runs chromium" in check.saw
    assert "rename [program:chrome] to [program:browser]" in check.fix


def test_programs_in_a_group() -> None:
    check = check_programs(changed("openbox", group="desktop"))
    assert check.verdict == Verdict.FAIL
    assert check.fix.startswith("remove [group:desktop]")
    assert check.edits == (RemoveSection("group:desktop"),)
    shared = changed("openbox", group="desktop")
    shared["browser"] = dataclasses.replace(GOOD["browser"], group="desktop")
    check = check_programs(shared)
    # Each leaves the group in turn: the last edit is the one that holds.
    assert check.edits[-1] in (
        SetOption("group:desktop", "programs", "openbox"),
        SetOption("group:desktop", "programs", "browser"),
    )


@pytest.mark.parametrize(
    "command", ["browser-stack serve", "/opt/venv/bin/python -m browser_stack serve"]
)
def test_sidecar_program_present(command: str) -> None:
    programs = changed("browser-stack", command=command)
    assert check_sidecar_program(programs).verdict == Verdict.OK


def test_sidecar_program_missing_or_not_autostarted() -> None:
    missing = check_sidecar_program(without("browser-stack"))
    assert missing.verdict == Verdict.FAIL
    assert "supervisord.d/browser-stack.conf" in missing.fix
    off = check_sidecar_program(changed("browser-stack", autostart=False))
    assert off.verdict == Verdict.FAIL
    assert "autostart=true" in off.fix


def test_autostart_follows_the_switch() -> None:
    assert check_autostart(GOOD, True, "DISABLE_BROWSER_STACK=true").verdict == Verdict.OK
    lazy_on = check_autostart(
        changed("openbox", autostart=True), True, "DISABLE_BROWSER_STACK=true"
    )
    assert lazy_on.verdict == Verdict.FAIL
    assert "autostart=true for openbox" in lazy_on.saw
    eager = {k: dataclasses.replace(v, autostart=True) for k, v in GOOD.items()}
    assert check_autostart(eager, False, "neither").verdict == Verdict.OK
    eager_off = dict(eager, websocat=GOOD["websocat"])
    check = check_autostart(eager_off, False, "neither")
    assert check.verdict == Verdict.WARN
    assert "autostart=false for websocat" in check.saw
    # Turned off by the deployment (run.sh gives it autostart=false in either mode):
    # not started at boot is what it asked for.
    off = {"websocat": "DISABLE_VNC"}
    check = check_autostart(eager_off, False, "no switch set", off)
    assert check.verdict == Verdict.OK
    assert "turned off by the deployment: websocat (DISABLE_VNC)" in check.saw
    assert check_autostart(GOOD, True, "LAZY_START_BROWSER_STACK=1", off).verdict == Verdict.OK


def test_whether_the_program_runs_chromium_itself() -> None:
    assert runs_chromium_itself(["chromium", "--x"], None) is True
    assert runs_chromium_itself(["/usr/bin/google-chrome"], None) is True
    assert runs_chromium_itself(["/opt/gem/browser.sh"], None) is None
    # live: what runs says it (Debian's /usr/bin/chromium execs the binary)
    running = ["/usr/lib/chromium/chromium", "--remote-debugging-port=9222"]
    assert runs_chromium_itself(["/opt/gem/browser.sh"], running) is True
    assert runs_chromium_itself(["chromium"], ["sh", "-c", "chromium; exit $?"]) is False


@pytest.mark.parametrize(
    ("stopsignal", "stopasgroup", "killasgroup", "direct", "no_child"),
    [
        ("INT", False, True, True, True),  # the repo's own programs file
        ("INT", True, True, None, True),
        ("TERM", True, True, True, True),
        ("HUP", False, True, True, True),
        ("INT", None, True, True, True),  # live, files not readable: INT to Chromium is enough
        ("QUIT", True, True, True, True),  # the signal reaches every child
        ("QUIT", False, True, True, None),  # Chromium does not end its children on QUIT
        ("KILL", False, True, True, None),
        ("QUIT", None, True, True, None),
        ("TERM", False, True, False, False),  # a wrapper dies on TERM, Chromium stays
        ("INT", False, False, True, False),  # a hung browser is SIGKILLed alone
        ("TERM", False, False, True, False),
        ("INT", False, True, False, False),  # INT to a wrapper that did not exec Chromium
        ("INT", False, True, None, None),  # a wrapper, not running: cannot tell
        ("INT", None, True, None, None),
    ],
)
def test_the_stop_rule(
    stopsignal: str,
    stopasgroup: bool | None,
    killasgroup: bool,
    direct: bool | None,
    no_child: bool | None,
) -> None:
    assert leaves_no_child(stopsignal, stopasgroup, killasgroup, direct) is no_child
    browser = dataclasses.replace(
        GOOD["browser"], stopsignal=stopsignal, stopasgroup=stopasgroup, killasgroup=killasgroup
    )
    check = check_browser_stop(browser, direct)
    verdict = {True: Verdict.OK, False: Verdict.FAIL, None: Verdict.WARN}[no_child]
    assert check.verdict == verdict, check
    if verdict != Verdict.OK:
        assert check.fix.startswith("set killasgroup=true in [program:browser]")
        # The edits, applied, make the rule hold.
        fixed = dict(stopasgroup=stopasgroup, killasgroup=killasgroup)
        for edit in check.edits:
            assert isinstance(edit, SetOption) and edit.section == "program:browser"
            fixed[edit.option] = edit.value == "true"
        assert leaves_no_child(stopsignal, fixed["stopasgroup"], fixed["killasgroup"], direct)


@pytest.mark.parametrize(
    ("stopsignal", "stopasgroup", "direct", "kept"),
    [
        ("INT", False, True, True),
        ("INT", True, None, True),
        ("INT", None, True, True),
        ("INT", False, False, False),  # to a wrapper alone: Chromium is SIGKILLed later
        ("INT", False, None, None),
        ("INT", None, None, None),
        ("HUP", False, True, True),
        ("HUP", True, True, False),
        ("HUP", None, True, None),
        ("TERM", False, True, False),
        ("TERM", True, True, False),
        ("KILL", False, True, False),
    ],
)
def test_the_cookie_rule(
    stopsignal: str, stopasgroup: bool | None, direct: bool | None, kept: bool | None
) -> None:
    assert keeps_cookies(stopsignal, stopasgroup, direct) is kept


def test_browser_stop_signal_term_fails_only_with_idle_stop() -> None:
    browser = dataclasses.replace(GOOD["browser"], stopsignal="TERM", stopasgroup=True)
    with_idle = check_browser_stop_signal(browser, True, 300)
    assert with_idle.verdict == Verdict.FAIL
    assert "on SIGTERM Chromium exits without committing its cookie database" in with_idle.saw
    assert "BROWSER_STACK_IDLE_TIMEOUT=300" in with_idle.saw
    assert "set stopsignal=INT" in with_idle.fix
    assert check_browser_stop_signal(browser, True, 0).verdict == Verdict.WARN
    assert check_browser_stop_signal(GOOD["browser"], True, 300).verdict == Verdict.OK
    hup = dataclasses.replace(GOOD["browser"], stopsignal="HUP", stopasgroup=None)
    assert check_browser_stop_signal(hup, True, 300).verdict == Verdict.WARN
    wrapper = dataclasses.replace(GOOD["browser"], command="/opt/gem/browser.sh")
    lost = check_browser_stop_signal(wrapper, False, 300)
    assert lost.verdict == Verdict.FAIL
    assert "SIGINT goes to /opt/gem/browser.sh alone and never reaches Chromium" in lost.saw


def test_flag_value() -> None:
    argvs = [["chromium", "--user-data-dir=/a", "--port", "1"], ["x", "--user-data-dir=/b"]]
    assert flag_value(argvs, "--user-data-dir") == "/a"
    assert flag_value(argvs, "--port") == "1"
    assert flag_value(argvs, "--missing") is None
    assert flag_value([["x", "--port"]], "--port") is None


def test_browser_profile() -> None:
    writable = PathFacts("/var/lib/p", exists=True, writable=True, fstype="ext4")
    check = check_browser_profile(argv("browser"), writable)
    assert check.verdict == Verdict.OK
    assert "writable on ext4" in check.saw
    later = PathFacts("/var/lib/p", exists=False, writable=True, fstype="overlay")
    assert "will be created" in check_browser_profile(argv("browser"), later).saw
    stuck = PathFacts("/var/lib/p", exists=True, writable=False)
    assert check_browser_profile(argv("browser"), stuck).verdict == Verdict.FAIL
    tmpfs = PathFacts("/var/lib/p", exists=True, writable=True, fstype="tmpfs")
    assert check_browser_profile(argv("browser"), tmpfs).verdict == Verdict.WARN
    missing = check_browser_profile([["chromium", "--remote-debugging-port=9222"]], None)
    assert missing.verdict == Verdict.WARN
    # Chromium takes a relative path from its working directory: it starts, but
    # where its profile goes depends on where supervisord runs.
    for value in ("profile", "$HOME/profile", "~/profile"):
        check = check_browser_profile([["chromium", f"--user-data-dir={value}"]], None)
        assert check.verdict == Verdict.WARN, value
        assert "not a fixed absolute path" in check.saw
    # As Chromium reads it: the last one counts, `--name value` is no value.
    last = [["chromium", "--user-data-dir=/a", "-user-data-dir=/var/lib/p"]]
    assert "--user-data-dir=/var/lib/p," in check_browser_profile(last, writable).saw
    spaced = [["chromium", "--user-data-dir", "/var/lib/p"]]
    assert check_browser_profile(spaced, writable).verdict == Verdict.WARN


def test_tigervnc_command() -> None:
    check = check_tigervnc_command(argv("tigervnc"), SETTINGS)
    assert (check.verdict, check.saw) == (Verdict.OK, "display :99, -rfbport 5900")
    other = check_tigervnc_command([["Xvnc", ":98", "-rfbport", "5900"]], SETTINGS)
    assert other.verdict == Verdict.FAIL
    assert "display :98, but the sidecar expects :99" in other.saw
    assert other.fix.startswith("set DISPLAY=:98 in the container's environment")
    assert other.edits == (SetEnv("DISPLAY", ":98"),)
    port = check_tigervnc_command([["Xvnc", ":99", "-rfbport=5901"]], SETTINGS)
    assert "-rfbport 5901, but the sidecar probes 5900" in port.saw
    assert port.fix.startswith("set VNC_SERVER_PORT=5901 in the container's environment")
    # Xvnc's default port is 5900 plus the display number.
    assert check_tigervnc_command([["Xvnc", ":99"]], SETTINGS).verdict == Verdict.FAIL
    assert check_tigervnc_command([["Xvnc", ":0"]], Settings(display=":0")).verdict == Verdict.OK
    # Behind the proxy the sidecar cannot take the public port as its internal one.
    proxy_env = Context(env={"BROWSER_STACK_ACTIVATION": "proxy"})
    proxied = check_tigervnc_command(argv("tigervnc"), PROXY, proxy_env)
    assert proxied.edits == (AppendArgs("program:tigervnc", ("-rfbport", "15900")),)
    assert check_tigervnc_command([["/opt/start-vnc.sh"]], SETTINGS).verdict == Verdict.WARN


def test_browser_command() -> None:
    assert check_browser_command(argv("browser"), SETTINGS).verdict == Verdict.OK
    other = check_browser_command([["chromium", "--remote-debugging-port=9333"]], SETTINGS)
    assert other.verdict == Verdict.FAIL
    assert "--remote-debugging-port 9333, but the sidecar probes 9222" in other.saw
    assert other.fix.startswith(
        "set BROWSER_REMOTE_DEBUGGING_PORT=9333 in the container's environment (or instead: "
        "append `--remote-debugging-port=9222` to command= in [program:browser]"
    )
    none = check_browser_command([["chromium", "about:blank"]], SETTINGS)
    assert none.verdict == Verdict.FAIL
    assert "no --remote-debugging-port" in none.saw
    wrapper = [["/opt/gem/browser.sh"]]
    assert check_browser_command(wrapper, SETTINGS).verdict == Verdict.WARN
    # live: the running process tree shows what a wrapper hides
    running = [*wrapper, ["/usr/lib/chromium/chromium", "--remote-debugging-port=9222"]]
    assert check_browser_command(running, SETTINGS).verdict == Verdict.OK


def test_mcp_command() -> None:
    assert check_mcp_command(argv("mcp-server-browser"), SETTINGS).verdict == Verdict.OK
    off = check_mcp_command(
        [["mcp-server-browser", "--port", "8100", "--cdp-endpoint", "http://127.0.0.1:9333/"]],
        SETTINGS,
    )
    assert off.verdict == Verdict.FAIL
    assert "on port 9333, but the sidecar probes 9222" in off.saw
    # Chromium listens on the sidecar's port: mcp-server-browser moves, not the sidecar.
    assert off.edits == (
        AppendArgs(
            "program:mcp-server-browser", ("--cdp-endpoint", "http://127.0.0.1:9222/json/version")
        ),
    )
    own = check_mcp_command([["mcp-server-browser", "--port", "8100"]], SETTINGS)
    assert own.verdict == Verdict.WARN
    assert "launches a browser of its own" in own.saw


def test_websocket_ports() -> None:
    assert websocket_ports(
        ["websocat", "--binary", "ws-l:127.0.0.1:6080", "tcp:127.0.0.1:5900"]
    ) == (
        "6080",
        "5900",
    )
    assert websocket_ports(["websocat", "-s", "6080"]) == ("6080", None)
    assert websocket_ports(["websockify", "--web", "/x", "6080", "localhost:5900"]) == (
        "6080",
        "5900",
    )
    assert websocket_ports(["websocat", "--help"]) == (None, None)


def test_websocat_command() -> None:
    check = check_websocat_command(argv("websocat"), SETTINGS)
    assert (check.verdict, check.saw) == (Verdict.OK, "listens on 6080, forwards to VNC port 5900")
    wrong = check_websocat_command(
        [["websocat", "ws-l:0.0.0.0:6081", "tcp:127.0.0.1:5900"]], SETTINGS
    )
    assert wrong.verdict == Verdict.FAIL
    assert "WEBSOCKET_PROXY_PORT=6081" in wrong.fix
    assert check_websocat_command([["/opt/ws.sh"]], SETTINGS).verdict == Verdict.WARN


def test_x_clients_display() -> None:
    assert check_x_clients_display(GOOD, {}, SETTINGS).verdict == Verdict.OK
    wrong = changed("openbox", environment={"DISPLAY": ":1"})
    check = check_x_clients_display(wrong, {}, SETTINGS)
    assert check.verdict == Verdict.FAIL
    assert "openbox gets DISPLAY=:1, the X server is :99" in check.saw
    # no environment= of its own: supervisord's is inherited
    inherit = changed("openbox", environment={})
    assert check_x_clients_display(inherit, {"DISPLAY": ":99.0"}, SETTINGS).verdict == Verdict.OK
    assert check_x_clients_display(inherit, {}, SETTINGS).verdict == Verdict.FAIL
    # live without the files: its own environment is not known
    unknown = changed("openbox", environment=None)
    assert check_x_clients_display(unknown, {}, SETTINGS).verdict == Verdict.WARN
    flag = changed("browser", command="chromium --display=:3", environment=DISPLAY_ENV)
    assert check_x_clients_display(flag, {}, SETTINGS).verdict == Verdict.FAIL


def test_executables() -> None:
    found = {"browser": Executable("browser", "chromium", "/usr/bin/chromium")}
    assert check_executables(found).verdict == Verdict.OK
    path = ("/usr/bin", "/bin")
    missing = {
        "browser": Executable("browser", "chromium", None, "does not exist", path),
        "websocat": Executable("websocat", "websocat", None, "does not exist", path),
        "openbox": Executable("openbox", "/opt/ob", "/opt/ob", "is not executable", path),
    }
    check = check_executables(missing)
    assert check.verdict == Verdict.FAIL
    assert check.saw == (
        "chromium (browser), websocat (websocat) not found on PATH=/usr/bin:/bin; "
        "[program:openbox] is not executable: supervisord cannot spawn it (spawn error, then FATAL)"
    )


def test_executables_name_what_supervisord_cannot_spawn() -> None:
    empty = Executable("browser", "", None, "has an empty command=", section="program:browser")
    check = check_executables({"browser": empty})
    assert check.saw.startswith("[program:browser] has an empty command=")
    assert "not found on PATH" not in check.saw
    missing = Executable(
        "browser",
        "chromium",
        None,
        "directory=/nope does not exist, so supervisord cannot change to it",
        section="program:browser",
        edits=(SetOption("program:browser", "directory", None),),
    )
    check = check_executables({"browser": missing})
    assert check.edits == (SetOption("program:browser", "directory", None),)
    assert check.fix == "remove directory= from [program:browser]"


def test_wait_ports() -> None:
    ports = SETTINGS.program_ports
    assert check_wait_ports("8079,9222", False, ports, "x").verdict == Verdict.OK  # eager
    assert check_wait_ports(None, True, ports, "x").verdict == Verdict.OK
    assert check_wait_ports("8079,8091", True, ports, "x").verdict == Verdict.OK
    held = check_wait_ports("8079, localhost:9222,8100", True, ports, "x")
    assert held.verdict == Verdict.FAIL
    assert "holds localhost:9222, 8100" in held.saw


def test_stack_ports() -> None:
    holders: dict[str, PortHolder | None] = dict.fromkeys(SETTINGS.program_ports)
    assert check_stack_ports(holders, {}, SETTINGS).verdict == Verdict.OK
    holders["cdp"] = PortHolder(9222, 42, "chromium --remote-debugging-port=9222")
    own = check_stack_ports(holders, {"browser": frozenset({41, 42})}, SETTINGS)
    assert own.verdict == Verdict.OK
    assert "9222 held by browser (pid 42)" in own.saw
    foreign = check_stack_ports(holders, {}, SETTINGS)
    assert foreign.verdict == Verdict.FAIL
    assert "9222 (browser) is held by pid 42 (chromium --remote-debugging-port=9222)" in foreign.saw
    assert "BROWSER_REMOTE_DEBUGGING_PORT" in foreign.fix
    holders["cdp"] = PortHolder(9222, None, "")
    assert check_stack_ports(holders, {}, SETTINGS).verdict == Verdict.WARN


def test_x_lock() -> None:
    path = "/tmp/.X99-lock"
    assert check_x_lock(XLock(path, None), ":99", frozenset()).verdict == Verdict.OK
    own = check_x_lock(XLock(path, 7, True, True, "Xvnc :99"), ":99", frozenset({7}))
    assert own.verdict == Verdict.OK
    other = check_x_lock(XLock(path, 8, True, True, "Xvfb :99"), ":99", frozenset({7}))
    assert other.verdict == Verdict.FAIL
    assert "X server pid 8 (Xvfb :99)" in other.saw
    gone = check_x_lock(XLock(path, 9), ":99", frozenset())
    assert gone.verdict == Verdict.WARN
    assert "pid 9, which is gone" in gone.saw
    foreign = check_x_lock(XLock(path, 10, True, False, "sleep 100"), ":99", frozenset())
    assert foreign.verdict == Verdict.WARN
    assert "not an X server" in foreign.saw


def test_pidfd() -> None:
    assert check_pidfd(None).verdict == Verdict.OK
    assert check_pidfd("OSError: [Errno 38] Function not implemented").verdict == Verdict.WARN


def test_exposure() -> None:
    assert check_exposure({}, None).verdict == Verdict.OK
    open_ = check_exposure({"BROWSER_STACK_LISTEN": "0.0.0.0:8110"}, None)
    assert open_.verdict == Verdict.FAIL
    assert "set BROWSER_STACK_TOKEN" in open_.fix
    guarded = {"BROWSER_STACK_LISTEN": "0.0.0.0:8110", "BROWSER_STACK_TOKEN": "t"}
    assert check_exposure(guarded, None).verdict == Verdict.OK
    route = "/opt/gem/nginx/browser-stack.conf"
    assert check_exposure({}, route).verdict == Verdict.WARN
    assert check_exposure({"BROWSER_STACK_TOKEN": "t"}, route).verdict == Verdict.OK
    assert check_exposure({"BROWSER_STACK_LISTEN": "nonsense"}, None).verdict == Verdict.WARN


def test_cgroup() -> None:
    assert check_cgroup({"available": True, "path": "/sys/fs/cgroup"}).verdict == Verdict.OK
    check = check_cgroup({"available": False, "reason": "no cgroup v2 hierarchy"})
    assert check.verdict == Verdict.WARN
    assert "falls back to per-process figures" in check.saw


# --- put together --------------------------------------------------------------------


SUPERVISORD = SupervisordConfig(
    servers=(Server("unix_http_server", "unix", file="/var/run/supervisor.sock"),),
    rpcinterfaces=(("supervisor", MAIN_RPCINTERFACE),),
)


def facts(**changes: object) -> DoctorFacts:
    base = DoctorFacts(
        source=Source("static", "/etc/supervisord.conf", detail="read"),
        env={"DISABLE_BROWSER_STACK": "true"},
        settings=SETTINGS,
        lazy=True,
        programs=GOOD,
        boot_env={"WAIT_PORTS": "8079,8091", "DISPLAY": ":99"},
        boot_env_origin="test",
        executables={
            name: Executable(name, GOOD[name].argv[0], f"/usr/bin/{GOOD[name].argv[0]}")
            for name in GOOD
        },
        profile=PathFacts("/var/lib/browser-stack/profile", True, True, "ext4"),
        cgroup={"available": True, "path": "/sys/fs/cgroup"},
        supervisord_config=SUPERVISORD,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def verdicts(checks: list[Check]) -> dict[str, Verdict]:
    return {c.name: c.verdict for c in checks}


def test_static_runs_every_check_but_the_live_ones() -> None:
    checks = run_checks(facts())
    assert set(verdicts(checks).values()) == {Verdict.OK}, checks
    assert not {"stack-ports", "x-lock", "pidfd"} & set(verdicts(checks))


def test_live_adds_ports_x_lock_and_pidfd() -> None:
    live = facts(
        source=Source("live", "unix:///s", detail="answers"),
        holders=dict.fromkeys(SETTINGS.program_ports),
        x_lock=XLock("/tmp/.X99-lock", None),
    )
    names = list(verdicts(run_checks(live)))
    assert names[-5:] == ["stack-ports", "x-lock", "pidfd", "sidecar-exposure", "cgroup-memory"]


def test_a_missing_program_fails_only_the_programs_check() -> None:
    programs = without("browser")
    checks = verdicts(run_checks(facts(programs=programs)))
    assert [n for n, v in checks.items() if v == Verdict.FAIL] == ["programs"]
    for name in ("browser-stop", "browser-stop-signal", "browser-profile", "browser-command"):
        assert checks[name] == Verdict.WARN


def test_unreachable_supervisord_fails_once_and_checks_nothing_else() -> None:
    down = facts(
        source=Source("live", "unix:///s", error="not reachable", fix="start it"), programs=None
    )
    checks = run_checks(down)
    failed = [c.name for c in checks if c.verdict == Verdict.FAIL]
    assert failed == ["supervisord"]
    skipped = [c for c in checks if c.saw.startswith("not checked")]
    assert {c.name for c in skipped} >= {"programs", "autostart", "executables", "browser-stop"}


def test_with_supervisord_unreachable_ports_and_the_x_lock_are_not_called_free() -> None:
    # Whose a port or the X lock is needs the programs' pids, which only supervisord gives.
    down = facts(
        source=Source("live", "unix:///s", error="not reachable", fix="start it"), programs=None
    )
    checks = {c.name: c for c in run_checks(down)}
    for name in ("stack-ports", "x-lock"):
        assert checks[name].verdict == Verdict.WARN, checks[name]
        assert checks[name].saw.startswith("not checked"), checks[name]


async def test_pidfd_is_checked_even_when_supervisord_is_unreachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    env = {"SUPERVISOR_SERVER_URL": "unix:///nonexistent/supervisor.sock"}
    checks = {c.name: c for c in run_checks(await doctor.gather_live(env))}
    assert checks["supervisord"].verdict == Verdict.FAIL
    assert checks["pidfd"].verdict == Verdict.WARN
    assert "Function not implemented" in checks["pidfd"].saw


def test_invalid_settings_fail_once() -> None:
    checks = run_checks(facts(settings=None, settings_error="DISPLAY='x' is not an X display"))
    failed = [c.name for c in checks if c.verdict == Verdict.FAIL]
    assert failed == ["sidecar-settings"]
    assert verdicts(checks)["browser-command"] == Verdict.WARN


def test_report_table_json_and_exit_status() -> None:
    bad = facts(programs=changed("browser", stopsignal="TERM", stopasgroup=True))
    bad = dataclasses.replace(bad, settings=dataclasses.replace(SETTINGS, idle_timeout_s=60))
    report = doctor.report(bad)
    assert report.failed
    table = report.table()
    lines = table.splitlines()
    assert lines[0].split() == ["CHECK", "VERDICT", "SAW"]
    [row] = [i for i, line in enumerate(lines) if line.startswith("browser-stop-signal ")]
    assert lines[row].split()[1] == "fail"
    assert lines[row + 1].strip().startswith("fix: set stopsignal=INT")
    assert lines[-1].endswith("ok, 0 warn, 1 fail"), lines[-1]
    data = report.to_dict()
    assert data["ok"] is False
    assert data["counts"]["fail"] == 1
    assert {"check", "verdict", "saw", "fix", "edits"} == set(data["checks"][0])
    [stop_signal] = [c for c in data["checks"] if c["check"] == "browser-stop-signal"]
    assert stop_signal["edits"] == [
        {"edit": "set-option", "section": "program:browser", "option": "stopsignal", "value": "INT"}
    ]
    assert not doctor.report(facts()).failed


def test_command_needs_static_and_config_together(capsys: pytest.CaptureFixture[str]) -> None:
    args = argparse.Namespace(static=True, config=None, json=False)
    assert command(args, {}) == doctor.EXIT_USAGE
    args = argparse.Namespace(static=False, config="/x.conf", json=False)
    assert command(args, {}) == doctor.EXIT_USAGE
    assert "--static and --config go together" in capsys.readouterr().err


def test_report_counts() -> None:
    report = Report(
        "static", "x", (Check("a", Verdict.OK, "s"), Check("b", Verdict.WARN, "s", "f"))
    )
    assert report.counts() == {"ok": 1, "warn": 1, "fail": 0}
    assert not report.failed


# --- the static reader -----------------------------------------------------------------


SUPERVISORD_CONF = """[supervisord]
logfile={root}/supervisord.log
environment=SHARED="from-supervisord"
[include]
files = conf.d/*.conf
"""


def test_read_config_expands_from_the_given_environment(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "supervisord.conf").write_text(SUPERVISORD_CONF.format(root=tmp_path))
    (tmp_path / "conf.d" / "a.conf").write_text(
        "[program:browser]\ncommand=chromium --remote-debugging-port=%(ENV_PORT)s\n"
        "autostart=%(ENV_AUTO)s\nstopsignal=INT\nkillasgroup=true\n"
        'environment=DISPLAY=":5"\n'
        "[program:plain]\ncommand=sleep 1\n"
    )
    read = read_config(str(tmp_path / "supervisord.conf"), {"PORT": "9333", "AUTO": "false"})
    browser = read.programs["browser"]
    assert browser.argv == ["chromium", "--remote-debugging-port=9333"]
    assert browser.autostart is False
    assert (browser.stopsignal, browser.stopasgroup, browser.killasgroup) == ("INT", False, True)
    assert browser.environment == {"SHARED": "from-supervisord", "DISPLAY": ":5"}
    plain = read.programs["plain"]
    # supervisord's defaults
    assert (plain.autostart, plain.stopsignal, plain.stopasgroup, plain.killasgroup) == (
        True,
        "TERM",
        False,
        False,
    )
    assert read.included == (str(tmp_path / "conf.d" / "a.conf"),)


def test_read_config_names_an_unset_variable(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "supervisord.conf").write_text(SUPERVISORD_CONF.format(root=tmp_path))
    (tmp_path / "conf.d" / "a.conf").write_text("[program:x]\ncommand=x\nautostart=%(ENV_NOPE)s\n")
    with pytest.raises(UnreadableConfig) as caught:
        read_config(str(tmp_path / "supervisord.conf"), {})
    assert caught.value.missing_variable == "NOPE"
    assert "%(ENV_NOPE)s in program:x.autostart: NOPE is not set" in caught.value.message
    with pytest.raises(UnreadableConfig, match="could not find config file"):
        read_config(str(tmp_path / "missing.conf"), {})


# --- the route -------------------------------------------------------------------------


async def test_the_route_is_behind_the_token_and_starts_nothing() -> None:
    sup = FakeSupervisor()
    settings = dataclasses.replace(FAST, token="s3cret", supervisor_url="unix:///nonexistent.sock")
    controller, _ = make_controller(sup, settings)
    async with TestClient(TestServer(create_app(settings, controller))) as client:
        refused = await client.get("/v1/browser-stack/doctor")
        assert refused.status == 401
        answer = await client.get(
            "/v1/browser-stack/doctor", headers={"Authorization": "Bearer s3cret"}
        )
        assert answer.status == 200
        report = await answer.json()
    assert report["mode"] == "live"
    assert report["ok"] is False
    checks = {c["check"]: c for c in report["checks"]}
    assert checks["supervisord"]["verdict"] == "fail"
    assert "nonexistent.sock" in checks["supervisord"]["saw"]
    assert sup.calls == []


# --- reading as supervisord does, and fixes as edits -----------------------------------------

MAIN_CONF = """[unix_http_server]
file={root}/supervisor.sock
{auth}
[supervisord]
logfile={root}/supervisord.log
environment=SHARED="from-supervisord",BROWSER_STACK_IDLE_TIMEOUT="60"
{extra}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = conf.d/*.conf
"""
SIDECAR_CONF = """[program:browser-stack]
command=browser-stack serve
autorestart=unexpected
environment=BROWSER_STACK_IDLE_TIMEOUT="300",OWN="yes"
[program:browser]
command=chromium --remote-debugging-port=9222
numprocs=2
process_name=%(program_name)s_%(process_num)s
"""


def layout(tmp_path: Path, *, auth: str = "", extra: str = "", sidecar: str = SIDECAR_CONF) -> str:
    (tmp_path / "conf.d").mkdir(exist_ok=True)
    conf = tmp_path / "supervisord.conf"
    conf.write_text(MAIN_CONF.format(root=tmp_path, auth=auth, extra=extra))
    (tmp_path / "conf.d" / "a.conf").write_text(sidecar)
    return str(conf)


def test_read_config_keeps_sections_own_environments_and_servers(tmp_path: Path) -> None:
    read = read_config(layout(tmp_path), {})
    sidecar = read.programs["browser-stack"]
    assert sidecar.section == "program:browser-stack"
    assert sidecar.own_environment == {"BROWSER_STACK_IDLE_TIMEOUT": "300", "OWN": "yes"}
    assert sidecar.environment == {
        "SHARED": "from-supervisord",
        "BROWSER_STACK_IDLE_TIMEOUT": "300",
        "OWN": "yes",
    }
    assert (sidecar.autorestart, sidecar.serverurl) == ("unexpected", None)
    assert {n: c.section for n, c in read.programs.items() if c.group == "browser"} == {
        "browser_0": "program:browser",
        "browser_1": "program:browser",
    }
    assert read.supervisord.serverurl == f"unix://{tmp_path}/supervisor.sock"
    assert read.supervisord.rpcinterfaces == (("supervisor", MAIN_RPCINTERFACE),)
    assert "process_name=%(program_name)s_%(process_num)s" in read.text


def test_read_config_refuses_what_supervisord_refuses_as_it_starts(tmp_path: Path) -> None:
    with pytest.raises(UnreadableConfig) as caught:
        read_config(layout(tmp_path, extra="user=nosuchuser-h20"), {})
    assert "Invalid user name nosuchuser-h20" in caught.value.message
    assert caught.value.option == ("supervisord", "user")
    other = tmp_path / "socket"
    other.mkdir()
    (other / "supervisord.conf").write_text(
        MAIN_CONF.format(root=tmp_path / "nowhere", auth="", extra="").replace(
            "logfile=" + str(tmp_path / "nowhere"), f"logfile={tmp_path}"
        )
    )
    with pytest.raises(UnreadableConfig, match="cannot open its socket"):
        read_config(str(other / "supervisord.conf"), {})


def test_read_config_counts_the_directories_the_entrypoint_makes(tmp_path: Path) -> None:
    later = tmp_path / "later" / "log"
    conf = layout(tmp_path, extra=f"childlogdir={later}\nlogfile={later}/supervisord.log")
    with pytest.raises(UnreadableConfig):
        read_config(conf, {})
    read_config(conf, {}, created=[str(later)])
    assert not later.exists()  # read, not made


def test_read_config_says_a_parse_error_in_one_line(tmp_path: Path) -> None:
    conf = layout(tmp_path, sidecar=SIDECAR_CONF + "not an option\n")
    with pytest.raises(UnreadableConfig) as caught:
        read_config(conf, {})
    assert "\n" not in caught.value.message and "\t" not in caught.value.message
    assert "not an option" in caught.value.message


def test_the_sidecars_environment_in_supervisords_layers(tmp_path: Path) -> None:
    read = read_config(layout(tmp_path), {})
    boot_env = {"BROWSER_STACK_IDLE_TIMEOUT": "5", "SUPERVISOR_SERVER_URL": "unix:///x.sock"}
    values, origins, section = doctor.sidecar_environment(boot_env, read)
    assert section == "program:browser-stack"
    assert values["BROWSER_STACK_IDLE_TIMEOUT"] == "300"
    assert origins["BROWSER_STACK_IDLE_TIMEOUT"] == "program:browser-stack"
    assert (values["SHARED"], origins["SHARED"]) == ("from-supervisord", "supervisord")
    # supervisord sets its own URL over the one it was started with.
    assert values["SUPERVISOR_SERVER_URL"] == f"unix://{tmp_path}/supervisor.sock"
    ctx = Context(values, origins)
    assert ctx.origin_text("SUPERVISOR_SERVER_URL") == "supervisord's own server"
    assert ctx.where("SUPERVISOR_SERVER_URL") == "program:browser-stack"
    assert ctx.where("SHARED") == "supervisord"
    assert ctx.where("DISPLAY") == "environment"


def test_context_offers_only_what_the_sidecar_accepts() -> None:
    proxy = Context(env={"BROWSER_STACK_ACTIVATION": "proxy"})
    assert proxy.give("BROWSER_STACK_INTERNAL_CDP_PORT", "9222") is None  # the public port
    assert proxy.give("BROWSER_STACK_INTERNAL_CDP_PORT", "19333") == SetEnv(
        "BROWSER_STACK_INTERNAL_CDP_PORT", "19333"
    )
    assert Context().give("BROWSER_REMOTE_DEBUGGING_PORT", "$CDP_PORT") is None
    written = Context(text="command=chromium --remote-debugging-port=9333 --x=%%40")
    assert written.literal(["--remote-debugging-port=9333"])
    assert written.literal(["--x=%40"])
    assert not written.literal(["--remote-debugging-port=933"])


def _rpc(tmp_path: Path, ctx_env: Mapping[str, str] | None = None, **kw: str) -> Check:
    read = read_config(layout(tmp_path, **kw), {})
    values, origins, section = doctor.sidecar_environment({}, read)
    values.update(ctx_env or {})
    origins.update(dict.fromkeys(ctx_env or {}, section))
    ctx = Context(values, origins, read.text, section)
    return check_supervisor_rpc(read.supervisord, Settings.from_env(values), ctx)


def test_supervisor_rpc(tmp_path: Path) -> None:
    assert _rpc(tmp_path).verdict == Verdict.OK
    wrong = _rpc(tmp_path, {"SUPERVISOR_SERVER_URL": "unix:///elsewhere.sock"})
    assert wrong.verdict == Verdict.FAIL
    assert "(program:browser-stack" not in wrong.saw and "unix:///elsewhere.sock" in wrong.saw
    assert wrong.edits == (SetEnv("SUPERVISOR_SERVER_URL", None, "program:browser-stack"),)
    auth = "username=admin\npassword={SHA}" + "2c01d3a2d0c5d9bed6a2d4f9d4f93fa2ac4fd59a"
    locked = _rpc(tmp_path, auth=auth)
    assert locked.verdict == Verdict.FAIL
    assert "is not set" in locked.saw and not locked.edits
    import hashlib

    sha = hashlib.sha1(b"s3cret").hexdigest()
    given = {"SUPERVISOR_USERNAME": "admin", "SUPERVISOR_PASSWORD": "s3cret"}
    opened = _rpc(tmp_path, given, auth=f"username=admin\npassword={{SHA}}{sha}")
    assert opened.verdict == Verdict.OK, opened
    bad = dict(given, SUPERVISOR_PASSWORD="other")
    assert _rpc(tmp_path, bad, auth="username=admin\npassword=s3cret").verdict == Verdict.FAIL


def test_supervisor_rpc_without_the_interface_or_a_server() -> None:
    settings = Settings()
    bare = SupervisordConfig(servers=SUPERVISORD.servers)
    check = check_supervisor_rpc(bare, settings, Context())
    assert check.verdict == Verdict.FAIL
    assert check.edits == (
        SetOption("rpcinterface:supervisor", "supervisor.rpcinterface_factory", MAIN_RPCINTERFACE),
    )
    none = SupervisordConfig(rpcinterfaces=SUPERVISORD.rpcinterfaces)
    check = check_supervisor_rpc(none, settings, Context())
    assert check.edits == (SetOption("unix_http_server", "file", "/var/run/supervisor.sock"),)
    inet = SupervisordConfig(
        servers=(Server("inet_http_server", "inet", host="", port=9001),),
        rpcinterfaces=SUPERVISORD.rpcinterfaces,
    )
    reaches = Settings(supervisor_url="http://127.0.0.1:9001")
    assert check_supervisor_rpc(inet, reaches, Context()).verdict == Verdict.OK


def test_programs_say_numprocs_and_rename_as_edits() -> None:
    twice = without("browser")
    for n in (0, 1):
        twice[f"browser_{n}"] = dataclasses.replace(
            GOOD["browser"], name=f"browser_{n}", group="browser", section="program:browser"
        )
    check = check_programs(twice)
    assert "[program:browser] runs as browser_0, browser_1" in check.saw
    assert "rename" not in check.fix
    assert check.edits == (
        SetOption("program:browser", "numprocs", None),
        SetOption("program:browser", "process_name", None),
    )
    renamed = without("browser")
    renamed["chrome"] = dataclasses.replace(
        GOOD["browser"], name="chrome", group="chrome", section="program:chrome"
    )
    assert check_programs(renamed).edits == (RenameSection("program:chrome", "program:browser"),)
    assert check_programs(without("websocat")).edits == ()  # what to add is not an edit


def test_sidecar_program_comes_back_if_it_dies() -> None:
    for restart in ("true", "unexpected"):
        programs = changed("browser-stack", autorestart=restart)
        assert check_sidecar_program(programs).verdict == Verdict.OK
    off = check_sidecar_program(changed("browser-stack", autorestart="false"))
    assert off.verdict == Verdict.FAIL
    assert off.edits == (SetOption("program:browser-stack", "autorestart", "true"),)


def test_settings_fix_unsets_the_variable_where_it_is_set() -> None:
    ctx = Context(origins={"BROWSER_STACK_IDLE_TIMEOUT": "supervisord"})
    check = check_settings(
        None, "BROWSER_STACK_IDLE_TIMEOUT='soon' ...", "BROWSER_STACK_IDLE_TIMEOUT", ctx
    )
    assert check.edits == (SetEnv("BROWSER_STACK_IDLE_TIMEOUT", None, "supervisord"),)
    assert check.fix.startswith("remove BROWSER_STACK_IDLE_TIMEOUT from [supervisord] environment=")


def test_browser_command_reads_the_wrapper_and_the_script() -> None:
    wrapped = [["bash", "-c", "exec chromium --remote-debugging-port=9222 about:blank"]]
    assert check_browser_command(wrapped, SETTINGS).verdict == Verdict.OK
    after_url = [
        ["chromium", "--remote-debugging-port=9222", "about:blank", "--remote-debugging-port=9333"]
    ]
    assert check_browser_command(after_url, SETTINGS).verdict == Verdict.FAIL
    debian = Context(debian_chromium=True)
    assert check_browser_command(after_url, SETTINGS, debian).verdict == Verdict.OK
    spaced = check_browser_command([["chromium", "--remote-debugging-port", "9222"]], SETTINGS)
    assert spaced.verdict == Verdict.FAIL
    assert "which is no port" in spaced.saw
    assert "--remote-debugging-port= " not in spaced.fix  # no stray space in what it says
    shell = check_browser_command([["chromium", "--remote-debugging-port=$CDP_PORT"]], SETTINGS)
    assert "$CDP_PORT" not in shell.fix


def test_resolve_executable_from_supervisords_working_directory(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    exe = tmp_path / "bin" / "x"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    assert doctor.resolve_executable("bin/x", [], str(tmp_path)) == (str(exe), "")
    found, problem = doctor.resolve_executable("bin/x", [], str(tmp_path / "bin"))
    assert found is None and "can't find command bin/x" in problem
    _found, problem = doctor.resolve_executable("bin/x", [], str(tmp_path), str(tmp_path / "bin"))
    assert "not found from directory=" in problem
    assert doctor.resolve_executable("x", ["bin"], str(tmp_path)) == (str(exe), "")
