"""The doctor's checks: each a pure function from plain data to a verdict (ok,
warn, fail), what it saw, and a fix in one line. browser_stack.doctor gathers
the data and runs them."""

from __future__ import annotations

import itertools
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from browser_stack import boot
from browser_stack.config import (
    DEFAULT_LISTEN,
    INTERNAL_PORT_VARS,
    PUBLIC_PORT_VARS,
    Settings,
    parse_listen,
)
from browser_stack.errors import ConfigError
from browser_stack.ports import PortHolder
from browser_stack.stack import PORT_PROGRAMS, PROGRAMS, Program
from browser_stack.supervisord_conf import ProgramConfig

SIDECAR_PROGRAM = "browser-stack"
# What each program runs, to recognise one configured under another name.
RUNS = {
    Program.TIGERVNC: ("Xvnc", "Xtigervnc", "vncserver", "tigervncserver"),
    Program.OPENBOX: ("openbox", "openbox-session"),
    Program.BROWSER: (
        "chromium",
        "chromium-browser",
        "chrome",
        "google-chrome",
        "google-chrome-stable",
    ),
    Program.MCP_SERVER_BROWSER: ("mcp-server-browser",),
    Program.WEBSOCAT: ("websocat", "websockify"),
}
# Signals on which Chromium's browser process shuts down and ends its children.
CLEAN_SHUTDOWN_SIGNALS = frozenset({"INT", "TERM", "HUP"})
_X_DISPLAY_ARG = re.compile(r"^:(\d+)$")

STOP_GROUP_FIX = (
    "set killasgroup=true, and stopasgroup=true or stopsignal=INT to a command that runs "
    "Chromium itself (not a wrapper script), for [program:browser]: no Chromium process may "
    "outlive a stop (on INT Chromium ends its children after writing its profile; "
    "killasgroup SIGKILLs the whole group after stopwaitsecs)"
)
STOP_SIGNAL_FIX = (
    "set stopsignal=INT for [program:browser], with stopasgroup=true unless its command "
    "runs Chromium itself (INT keeps the cookies whether it reaches Chromium alone or with "
    "its group), or keep BROWSER_STACK_IDLE_TIMEOUT=0"
)


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    saw: str
    fix: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"check": self.name, "verdict": str(self.verdict), "saw": self.saw, "fix": self.fix}


def ok(name: str, saw: str) -> Check:
    return Check(name, Verdict.OK, saw)


def warn(name: str, saw: str, fix: str) -> Check:
    return Check(name, Verdict.WARN, saw, fix)


def fail(name: str, saw: str, fix: str) -> Check:
    return Check(name, Verdict.FAIL, saw, fix)


def not_checked(name: str, why: str) -> Check:
    return warn(name, f"not checked: {why}", "see the failing check above")


# --- what the checks look at ------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where the programs' configuration came from, and whether it could be had."""

    mode: str  # "live" or "static"
    where: str  # supervisord's URL, or the config file
    detail: str = ""  # what was read, for the ok line
    error: str = ""  # supervisord unreachable or refusing, files unreadable
    fix: str = ""  # for the error, or the notes
    notes: tuple[str, ...] = ()  # what could not be had besides (a warning)


@dataclass(frozen=True)
class Executable:
    program: str
    argv0: str
    found: str | None  # the file supervisord would exec
    problem: str = ""  # why it cannot be exec'd ("" when it can)
    searched: tuple[str, ...] = ()


@dataclass(frozen=True)
class PathFacts:
    path: str
    exists: bool
    writable: bool  # the directory, or its nearest existing parent
    fstype: str = ""


@dataclass(frozen=True)
class XLock:
    path: str
    pid: int | None  # None: no lock file; 0: unreadable
    alive: bool = False
    x_server: bool = False
    cmdline: str = ""


# --- the checks ------------------------------------------------------------------


def check_settings(settings: Settings | None, error: str) -> Check:
    if settings is None:
        return fail(
            "sidecar-settings",
            error,
            "fix the variable named (README: Configuration); `serve` refuses to start with it",
        )
    ports = settings.program_ports
    text = (
        f"listen {settings.listen}, display {settings.display}, programs on cdp {ports['cdp']}, "
        f"mcp {ports['mcp']}, vnc {ports['vnc']}, ws {ports['vnc_ws']}"
    )
    if settings.activation == "proxy":
        text += " (behind the activation proxy)"
    idle = f"after {settings.idle_timeout_s:g} s" if settings.idle_timeout_s else "off"
    return ok("sidecar-settings", f"{text}, idle stop {idle}")


def check_supervisord(source: Source) -> Check:
    if source.error:
        return fail("supervisord", source.error, source.fix)
    if source.notes:
        return warn("supervisord", f"{source.detail}; " + "; ".join(source.notes), source.fix)
    return ok("supervisord", source.detail)


def runs(config: ProgramConfig, program: Program) -> bool:
    """Whether a program's command runs what `program` is (by name, not by config)."""
    words = config.argv[:3]
    if program == Program.MCP_SERVER_BROWSER:
        return any("mcp-server-browser" in word for word in words)
    return any(os.path.basename(word) in RUNS[program] for word in words)


def check_programs(programs: Mapping[str, ProgramConfig]) -> Check:
    problems: list[str] = []
    fixes: list[str] = []
    for program in PROGRAMS:
        config = programs.get(program)
        if config is not None and config.group == program:
            continue
        if config is not None:
            problems.append(f"{program} is in [group:{config.group}]")
            fixes.append(f"take [program:{program}] out of [group:{config.group}]")
            continue
        others = [c.name for c in programs.values() if c.name not in PROGRAMS and runs(c, program)]
        if others:
            problems.append(f"no {program}, but [program:{others[0]}] runs {RUNS[program][0]}")
            fixes.append(f"rename [program:{others[0]}] to [program:{program}]")
        else:
            problems.append(f"no {program}")
            fixes.append(f"add [program:{program}]")
    if not problems:
        return ok("programs", ", ".join(PROGRAMS) + ": each configured, as its own group")
    return fail(
        "programs",
        "; ".join(problems),
        "; ".join(fixes) + " (the sidecar drives exactly these five names, outside any group)",
    )


def is_sidecar(argv: Sequence[str]) -> bool:
    """`browser-stack serve` or `python -m browser_stack serve`."""
    if "serve" not in argv:
        return False
    if argv and os.path.basename(argv[0]) == SIDECAR_PROGRAM:
        return True
    return any(a == "-m" and b == "browser_stack" for a, b in itertools.pairwise(argv))


def check_sidecar_program(programs: Mapping[str, ProgramConfig]) -> Check:
    found = [c for c in programs.values() if is_sidecar(c.argv)]
    if not found:
        return fail(
            "sidecar-program",
            "no program runs `browser-stack serve`",
            "copy supervisord.d/browser-stack.conf into supervisord's include directory "
            "(/opt/gem/supervisord/ in the AIO image)",
        )
    config = found[0]
    if not config.autostart:
        return fail(
            "sidecar-program",
            f"[program:{config.name}] runs `{config.command}` with autostart=false",
            f"set autostart=true for [program:{config.name}]: the sidecar runs from boot "
            "in every mode",
        )
    return ok("sidecar-program", f"[program:{config.name}] runs `{config.command}`, autostart")


def check_autostart(programs: Mapping[str, ProgramConfig], lazy: bool, switch: str) -> Check:
    present = [p for p in PROGRAMS if p in programs]
    which = "all five" if len(present) == len(PROGRAMS) else ", ".join(present)
    if lazy:
        on = [p for p in present if programs[p].autostart]
        if on:
            return fail(
                "autostart",
                f"lazy ({switch}), but autostart=true for {', '.join(on)}: "
                "supervisord starts them at boot",
                "make their autostart follow the switch: autostart=%(ENV_AUTOSTART_BROWSER_STACK)s"
                " in the standalone programs file; in the AIO image, boot through "
                "browser-stack-entrypoint --aio, which sets DISABLE_BROWSER, "
                "DISABLE_MCP_BROWSER and DISABLE_VNC",
            )
        return ok("autostart", f"lazy ({switch}): autostart=false for {which}")
    off = [p for p in present if not programs[p].autostart]
    if off:
        return warn(
            "autostart",
            f"eager ({switch}), but autostart=false for {', '.join(off)}: "
            "they start on the first ensure",
            "set DISABLE_BROWSER_STACK=true to start the whole stack on demand, "
            "or autostart=true for them",
        )
    return ok("autostart", f"eager ({switch}): autostart=true for {which}")


def _flag_text(value: bool | None) -> str:
    return "(not visible)" if value is None else str(value).lower()


def runs_chromium_itself(argv: Sequence[str], main_argv: Sequence[str] | None) -> bool | None:
    """Whether the browser program's own process is Chromium, so that a signal
    to it alone reaches the browser: what runs now (live), else whether the
    command names Chromium (Debian's /usr/bin/chromium script execs it). None: a
    command that may be a wrapper, not running."""
    if main_argv:
        return os.path.basename(main_argv[0]) in RUNS[Program.BROWSER]
    if argv and os.path.basename(argv[0]) in RUNS[Program.BROWSER]:
        return True
    return None


def leaves_no_child(
    stopsignal: str, stopasgroup: bool | None, killasgroup: bool, direct: bool | None
) -> bool | None:
    """The rule for the browser program's stop (bench/stop_signals.py): no
    process outlives it when killasgroup=true (a browser still there after
    stopwaitsecs is SIGKILLed with its whole group) and the stop signal reaches
    Chromium: stopasgroup=true, or the program's process is Chromium itself,
    which ends its children on INT, TERM and HUP. A wrapper that does not exec
    Chromium dies on TERM and leaves it running. None: not decidable here, or a
    signal Chromium does not handle (its children exited with it when measured,
    but nothing ends one that does not)."""
    if not killasgroup:
        return False
    if stopasgroup is True:
        return True
    if direct is True:
        return True if stopsignal in CLEAN_SHUTDOWN_SIGNALS else None
    if direct is False and stopasgroup is False:
        return False
    return None


def keeps_cookies(stopsignal: str, stopasgroup: bool | None, direct: bool | None) -> bool | None:
    """Whether Chromium commits its cookie database when supervisord stops it
    (bench/stop_signals.py): on INT, to the browser alone or to its group; on
    HUP only to the browser alone; never on TERM or a SIGKILL. A signal to a
    wrapper alone never reaches Chromium, which is SIGKILLed after stopwaitsecs.
    None: not decidable from what is visible."""
    if stopsignal not in ("INT", "HUP"):
        return False
    if stopasgroup is True:
        return stopsignal == "INT"
    if stopasgroup is False:
        return direct
    return True if stopsignal == "INT" and direct else None


def _stop_text(browser: ProgramConfig, direct: bool | None) -> str:
    runs = {True: ", the program's process is Chromium itself", None: ""}.get(
        direct, f", the program's process is {browser.argv[0] if browser.argv else '?'}"
    )
    return (
        f"stopsignal={browser.stopsignal}, stopasgroup={_flag_text(browser.stopasgroup)}, "
        f"killasgroup={_flag_text(browser.killasgroup)}{runs}"
    )


def _signal_text(browser: ProgramConfig, direct: bool | None) -> str:
    to = {True: " to the group", False: " to the program alone", None: ""}[browser.stopasgroup]
    runs = {True: " (Chromium itself)", None: ""}.get(
        direct, f" ({browser.argv[0] if browser.argv else '?'}, not Chromium)"
    )
    return f"stopsignal={browser.stopsignal}{to}{runs}"


def check_browser_stop(browser: ProgramConfig, direct: bool | None) -> Check:
    sig = browser.stopsignal
    seen = _stop_text(browser, direct)
    verdict = leaves_no_child(sig, browser.stopasgroup, browser.killasgroup, direct)
    argv0 = browser.argv[0] if browser.argv else "?"
    if verdict:
        how = (
            "the stop signal and the SIGKILL reach the whole group"
            if browser.stopasgroup
            else f"on SIG{sig} Chromium ends its children; SIGKILL to the group after stopwaitsecs"
        )
        return ok("browser-stop", f"{seen}: {how}")
    if verdict is None:
        why = (
            f"Chromium does not end its children on SIG{sig}"
            if direct
            else f"SIG{sig} reaches Chromium only if {argv0} execs it or stopasgroup is true, "
            "and neither is visible here"
        )
        return warn("browser-stop", f"{seen}: {why}", STOP_GROUP_FIX)
    if not browser.killasgroup:
        why = "a browser still running after stopwaitsecs is SIGKILLed alone; its children stay"
    else:
        why = f"SIG{sig} goes to {argv0} alone, not to Chromium: a wrapper that dies on it "
        why += "leaves Chromium running"
    return fail("browser-stop", f"{seen}: {why}", STOP_GROUP_FIX)


def check_browser_stop_signal(
    browser: ProgramConfig, direct: bool | None, idle_timeout_s: float
) -> Check:
    sig = browser.stopsignal
    seen = _signal_text(browser, direct)
    kept = keeps_cookies(sig, browser.stopasgroup, direct)
    if kept:
        return ok("browser-stop-signal", f"{seen}: Chromium commits its cookies before it exits")
    if kept is None:
        return warn(
            "browser-stop-signal",
            f"{seen}: whether SIG{sig} reaches Chromium as it must to keep the cookies "
            "(INT: to it or its group; HUP: to it alone) is not visible here",
            STOP_SIGNAL_FIX,
        )
    if sig in ("INT", "HUP") and browser.stopasgroup is False:
        why = f"SIG{sig} goes to {browser.argv[0]} alone and never reaches Chromium, which is "
        why += "SIGKILLed after stopwaitsecs"
    elif sig == "HUP":
        why = "SIGHUP to the whole group ends Chromium's helpers before the browser commits"
    else:
        why = f"on SIG{sig} Chromium exits without committing its cookie database"
    seen = f"{seen}: {why}, so cookies set since its last flush are lost on every stop"
    if idle_timeout_s > 0:
        return fail(
            "browser-stop-signal",
            f"{seen}; idle stop is on (BROWSER_STACK_IDLE_TIMEOUT={idle_timeout_s:g})",
            STOP_SIGNAL_FIX,
        )
    return warn(
        "browser-stop-signal", f"{seen}; idle stop is off, so only explicit stops", STOP_SIGNAL_FIX
    )


def flag_value(argvs: Iterable[Sequence[str]], *names: str) -> str | None:
    """The value of the first of `names` (`--name=value` or `--name value`) in
    any of the argument lists, the configured command first."""
    for argv in argvs:
        for i, word in enumerate(argv):
            for name in names:
                if word.startswith(name + "="):
                    return word[len(name) + 1 :]
                if word == name and i + 1 < len(argv):
                    return argv[i + 1]
    return None


def check_browser_profile(argvs: Sequence[Sequence[str]], facts: PathFacts | None) -> Check:
    value = flag_value(argvs, "--user-data-dir")
    fix = (
        "pass --user-data-dir=DIR to Chromium with DIR a fixed directory on the container's "
        "disk or a volume, writable by the browser's user (e.g. /var/lib/browser-stack/profile)"
    )
    if value is None:
        return warn(
            "browser-profile",
            "no --user-data-dir in the browser's command: Chromium picks its default profile "
            "under $HOME",
            fix,
        )
    if not value.startswith("/") or any(c in value for c in "$~`"):
        return fail(
            "browser-profile",
            f"--user-data-dir={value} is not a fixed absolute path (no shell expands it)",
            fix,
        )
    if facts is None or not facts.writable:
        where = "it" if facts is None or facts.exists else "its nearest existing parent"
        return fail(
            "browser-profile",
            f"--user-data-dir={value}: {where} is not writable, so Chromium cannot keep a profile",
            fix,
        )
    if facts.fstype == "tmpfs":
        return warn(
            "browser-profile",
            f"--user-data-dir={value} is on tmpfs: the profile is held in memory and lost "
            "when the container restarts",
            fix,
        )
    state = "writable" if facts.exists else "will be created (its parent is writable)"
    on = f" on {facts.fstype}" if facts.fstype else ""
    return ok("browser-profile", f"--user-data-dir={value}, {state}{on}")


def port_var(kind: str, settings: Settings) -> str:
    return (INTERNAL_PORT_VARS if settings.activation == "proxy" else PUBLIC_PORT_VARS)[kind]


def _port_item(
    what: str, seen: str | None, kind: str, settings: Settings, program_fix: str
) -> tuple[str, str | None]:
    """(text, fix): fix is None when `seen` agrees with the sidecar's setting."""
    want = settings.program_ports[kind]
    if seen is not None and seen.isdigit() and int(seen) == want:
        return f"{what} {want}", None
    var = port_var(kind, settings)
    if seen is None:
        return f"no {what} (the sidecar probes {want})", f"{program_fix} {want}"
    return (
        f"{what} {seen}, but the sidecar probes {want}",
        f"set {var}={seen} for the sidecar, or {program_fix} {want}",
    )


def _command_check(
    name: str, items: Sequence[tuple[str, str | None]], unseen: str | None = None
) -> Check:
    if unseen is not None:
        return warn(name, unseen, "make sure the command behind it uses the sidecar's ports")
    bad = [(text, fix) for text, fix in items if fix is not None]
    if bad:
        return fail(name, "; ".join(t for t, _ in bad), "; ".join(f for _, f in bad if f))
    return ok(name, ", ".join(text for text, _ in items))


def check_tigervnc_command(argvs: Sequence[Sequence[str]], settings: Settings) -> Check:
    argv = argvs[0] if argvs else []
    displays = [m[1] for word in argv[1:] if (m := _X_DISPLAY_ARG.match(word))]
    rfbport = flag_value(argvs, "-rfbport", "--rfbport")
    is_xvnc = bool(argv) and os.path.basename(argv[0]) in RUNS[Program.TIGERVNC]
    if not is_xvnc and not displays and rfbport is None:
        return _command_check(
            "tigervnc-command",
            [],
            f"`{' '.join(argv)}` shows neither a display nor -rfbport (a wrapper script?)",
        )
    # Xvnc's defaults: display :0, port 5900 + the display number.
    display = int(displays[0]) if displays else 0
    items: list[tuple[str, str | None]] = []
    if display == settings.display_number:
        items.append((f"display :{display}", None))
    else:
        items.append(
            (
                f"display :{display}, but the sidecar expects :{settings.display_number}",
                f"set DISPLAY=:{display} for the sidecar, or run Xvnc on "
                f":{settings.display_number}",
            )
        )
    seen_port = rfbport if rfbport is not None else str(5900 + display)
    items.append(_port_item("-rfbport", seen_port, "vnc", settings, "give Xvnc -rfbport"))
    return _command_check("tigervnc-command", items)


def check_browser_command(argvs: Sequence[Sequence[str]], settings: Settings) -> Check:
    argv = argvs[0] if argvs else []
    port = flag_value(argvs, "--remote-debugging-port")
    is_chromium = bool(argv) and os.path.basename(argv[0]) in RUNS[Program.BROWSER]
    if port is None and not is_chromium:
        return _command_check(
            "browser-command",
            [],
            f"`{' '.join(argv)}` shows no --remote-debugging-port (a wrapper script?)",
        )
    item = _port_item(
        "--remote-debugging-port", port, "cdp", settings, "give Chromium --remote-debugging-port="
    )
    return _command_check("browser-command", [item])


def endpoint_port(url: str) -> str | None:
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError:
        return "?"
    if port is None:
        return {"http": "80", "ws": "80", "https": "443", "wss": "443"}.get(parts.scheme)
    return str(port)


def check_mcp_command(argvs: Sequence[Sequence[str]], settings: Settings) -> Check:
    port = flag_value(argvs, "--port")
    endpoint = flag_value(argvs, "--cdp-endpoint")
    if endpoint is None:
        return warn(
            "mcp-command",
            "no --cdp-endpoint: mcp-server-browser launches a browser of its own instead of "
            "driving the stack's Chromium",
            f"add --cdp-endpoint http://127.0.0.1:{settings.program_ports['cdp']}/json/version",
        )
    items = [
        _port_item("--port", port, "mcp", settings, "give mcp-server-browser --port"),
        _port_item(
            f"--cdp-endpoint {endpoint} on port",
            endpoint_port(endpoint),
            "cdp",
            settings,
            "point --cdp-endpoint at port",
        ),
    ]
    return _command_check("mcp-command", items)


def websocket_ports(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """(listen port, target port) of a websocat or websockify command line."""
    listen = target = None
    if argv and os.path.basename(argv[0]) == "websockify":
        # websockify [options] [source_addr:]source_port target_addr:target_port
        positional = [w for w in argv[1:] if not w.startswith("-")]
        if len(positional) >= 2:
            return positional[-2].rsplit(":", 1)[-1], positional[-1].rsplit(":", 1)[-1]
        return None, None
    for i, word in enumerate(argv):
        if word.startswith(("ws-l:", "ws-listen:", "l-ws:")):
            listen = word.rsplit(":", 1)[-1]
        elif word in ("-s", "--server-mode") and i + 1 < len(argv):
            listen = argv[i + 1].rsplit(":", 1)[-1]
        elif word.startswith(("tcp:", "tcp-connect:", "tcp-c:")):
            target = word.rsplit(":", 1)[-1]
    return listen, target


def check_websocat_command(argvs: Sequence[Sequence[str]], settings: Settings) -> Check:
    listen = target = None
    for argv in argvs:
        found = websocket_ports(argv)
        listen, target = listen or found[0], target or found[1]
    if listen is None and target is None:
        argv = argvs[0] if argvs else []
        return _command_check(
            "websocat-command",
            [],
            f"`{' '.join(argv)}` shows neither a listen port nor a VNC target",
        )
    return _command_check(
        "websocat-command",
        [
            _port_item("listens on", listen, "vnc_ws", settings, "make websocat listen on"),
            _port_item("forwards to VNC port", target, "vnc", settings, "point websocat at"),
        ],
    )


def display_number(value: str) -> int | None:
    """The display number of "[host]:N[.S]", or None."""
    match = re.match(r"^.*:(\d+)(?:\.\d+)?$", value)
    return int(match[1]) if match else None


def check_x_clients_display(
    programs: Mapping[str, ProgramConfig],
    supervisord_env: Mapping[str, str],
    settings: Settings,
) -> Check:
    want = settings.display_number
    items: list[str] = []
    bad: list[str] = []
    unknown: list[str] = []
    for program in (Program.OPENBOX, Program.BROWSER):
        config = programs.get(program)
        if config is None:
            continue
        flag = flag_value([config.argv], "--display") if program == Program.BROWSER else None
        own = config.environment or {}
        value = flag or own.get("DISPLAY") or supervisord_env.get("DISPLAY")
        if value is None:
            (unknown if config.environment is None else bad).append(f"{program} has no DISPLAY")
            continue
        if display_number(value) != want:
            bad.append(f"{program} gets DISPLAY={value}, the X server is :{want}")
        else:
            items.append(f"{program} {value}")
    fix = (
        f'give [program:openbox] and [program:browser] environment=DISPLAY=":{want}", '
        "or set DISPLAY for the sidecar to the display they use"
    )
    if bad:
        return fail("x-clients-display", "; ".join(bad), fix)
    if unknown:
        return warn(
            "x-clients-display",
            "; ".join(unknown) + " in supervisord's environment (their own is not visible)",
            fix,
        )
    return ok("x-clients-display", ", ".join(items) or "no X client configured")


def check_executables(executables: Mapping[str, Executable]) -> Check:
    bad = [e for e in executables.values() if e.problem]
    if not bad:
        found = ", ".join(f"{e.program} {e.found}" for e in executables.values())
        return ok("executables", found or "no program to check")
    missing: dict[tuple[str, ...], list[str]] = {}
    other: list[str] = []
    for e in bad:
        if e.found is None and "/" not in e.argv0:
            missing.setdefault(e.searched, []).append(f"{e.argv0} ({e.program})")
        else:
            other.append(f"{e.found or e.argv0} ({e.program}) {e.problem}")
    parts = [
        f"{', '.join(names)} not found on PATH={os.pathsep.join(path)}"
        for path, names in missing.items()
    ]
    return fail(
        "executables",
        "; ".join(parts + other),
        "install what is missing, or name it by absolute path in the command (supervisord "
        "looks for argv[0] on the program's PATH: its environment=PATH=..., else its own)",
    )


def check_wait_ports(
    wait_ports: str | None, lazy: bool, ports: Mapping[str, int], origin: str
) -> Check:
    stack_ports = {str(port) for port in ports.values()}
    if not lazy:
        return ok(
            "wait-ports",
            f"eager: the five start at boot, so run.sh may wait for them "
            f"(WAIT_PORTS={wait_ports or ''}, {origin})",
        )
    entries = boot.wait_port_entries(wait_ports or "")
    if not entries:
        return ok("wait-ports", f"WAIT_PORTS unset ({origin}): nothing waits for the stack")
    held = [e for e in entries if boot.entry_port(e) in stack_ports]
    if held:
        return fail(
            "wait-ports",
            f"lazy, and WAIT_PORTS={wait_ports} ({origin}) holds {', '.join(held)}: run.sh "
            "waits for ports that open only on first use, and the container never finishes "
            "booting",
            "take the stack's ports out of WAIT_PORTS (browser-stack-entrypoint --aio does "
            "when it is the image's ENTRYPOINT and the switch is on)",
        )
    return ok(
        "wait-ports",
        f"lazy; WAIT_PORTS={wait_ports} ({origin}) holds none of "
        f"{', '.join(sorted(stack_ports, key=int))}",
    )


def check_stack_ports(
    holders: Mapping[str, PortHolder | None],
    pids: Mapping[str, frozenset[int]],
    settings: Settings,
) -> Check:
    items: list[str] = []
    foreign: list[tuple[str, str]] = []
    hidden: list[str] = []
    for kind, port in settings.program_ports.items():
        program = PORT_PROGRAMS[kind]
        holder = holders.get(kind)
        if holder is None:
            items.append(f"{port} free")
        elif holder.pid is not None and holder.pid in pids.get(program, frozenset()):
            items.append(f"{port} held by {program} (pid {holder.pid})")
        elif holder.pid is None:
            hidden.append(f"{port} ({program}) is in use by a process not visible here")
        else:
            foreign.append(
                (
                    f"{port} ({program}) is held by pid {holder.pid} ({holder.name})",
                    port_var(kind, settings),
                )
            )
    if foreign:
        return fail(
            "stack-ports",
            "; ".join(text for text, _ in foreign),
            "stop that process, or move the stack to a free port ("
            + ", ".join(var for _, var in foreign)
            + " for the sidecar and the program's command)",
        )
    if hidden:
        return warn(
            "stack-ports",
            "; ".join(hidden),
            "find the holder with `ss -ltnp` as root; the program cannot start while it holds it",
        )
    return ok("stack-ports", ", ".join(items))


def check_x_lock(lock: XLock, display: str, tigervnc_pids: frozenset[int]) -> Check:
    if lock.pid is None:
        return ok("x-lock", f"no {lock.path}: display {display} is free")
    if lock.pid in tigervnc_pids:
        return ok("x-lock", f"{lock.path} names pid {lock.pid}, tigervnc's own Xvnc")
    if lock.alive and lock.x_server:
        return fail(
            "x-lock",
            f"display {display} is served by X server pid {lock.pid} ({lock.cmdline}), "
            "not by tigervnc: Xvnc cannot start",
            "stop that X server, or set DISPLAY (the sidecar and the programs) to a free display",
        )
    holder = (
        f"pid {lock.pid} ({lock.cmdline}), not an X server"
        if lock.alive
        else f"pid {lock.pid}, which is gone"
        if lock.pid
        else "no readable pid"
    )
    return warn(
        "x-lock",
        f"stale {lock.path}: it names {holder}; the sidecar removes it before it starts Xvnc",
        "nothing needed for ensure; a supervisord autostart of Xvnc would fail on it "
        f"(remove {lock.path} and the X socket)",
    )


def check_pidfd(error: str | None) -> Check:
    if error is None:
        return ok("pidfd", "pidfd_open(2) works: a process's exit can be waited on as an event")
    return warn(
        "pidfd",
        f"pidfd_open(2) fails ({error}): process exits are seen only by polling",
        "run on Linux 5.3 or later, with pidfd_open allowed by the container's seccomp profile",
    )


def check_exposure(env: Mapping[str, str], nginx_route: str | None) -> Check:
    token = bool(env.get("BROWSER_STACK_TOKEN"))
    try:
        listen = parse_listen(env.get("BROWSER_STACK_LISTEN", "").strip() or DEFAULT_LISTEN)
    except ConfigError as exc:
        return not_checked("sidecar-exposure", exc.message)
    if not listen.is_loopback and not token:
        return fail(
            "sidecar-exposure",
            f"BROWSER_STACK_LISTEN={listen} is not loopback and BROWSER_STACK_TOKEN is not set: "
            "anyone who reaches it can start and stop the stack",
            "set BROWSER_STACK_TOKEN, or listen on 127.0.0.1",
        )
    if nginx_route is not None and not token:
        return warn(
            "sidecar-exposure",
            f"{nginx_route} routes the gateway's /browser-stack/ to the sidecar and "
            "BROWSER_STACK_TOKEN is not set: whoever reaches the gateway can start and stop it",
            "set BROWSER_STACK_TOKEN and the gateway's Authorization header "
            "(docs/aio-image.md, The gateway)",
        )
    where = "loopback" if listen.is_loopback else "not loopback"
    route = f"gateway route {nginx_route}" if nginx_route else "no gateway route"
    return ok(
        "sidecar-exposure",
        f"listens on {listen} ({where}), token {'set' if token else 'not set'}, {route}",
    )


def check_cgroup(report: Mapping[str, Any]) -> Check:
    if report.get("available"):
        return ok("cgroup-memory", f"cgroup v2 memory.current readable at {report.get('path')}")
    return warn(
        "cgroup-memory",
        f"{report.get('reason', 'no cgroup v2')}: the memory report falls back to "
        "per-process figures",
        "run on a cgroup v2 host (current Docker and Kubernetes nodes) to see the container's "
        "memory as Kubernetes does",
    )
