"""The doctor's checks: each a pure function from plain data to a verdict (ok,
warn, fail), what it saw, and a fix in one line. browser_stack.doctor gathers
the data and runs them.

Where a fix can be said as edits of supervisord's files or of the container's
environment (browser_stack.doctor.edits), the fix line is their text and the check
carries them: applied, they make that check pass. The rest (install a program,
copy a file) stay sentences."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from browser_stack.config import (
    DEFAULT_LISTEN,
    LAZY_IDLE_TIMEOUT_S,
    Settings,
    parse_listen,
)
from browser_stack.core_types import PortHolder
from browser_stack.doctor import boot
from browser_stack.doctor.command_lines import (
    chromium_port,
    chromium_switch,
    option_value,
    unwrap,
    xvnc_display,
    xvnc_parameter,
)
from browser_stack.doctor.edits import (
    CONTAINER,
    AppendArgs,
    Edit,
    RemoveSection,
    RenameSection,
    ReplaceArgs,
    SetEnv,
    SetOption,
    describe,
)
from browser_stack.doctor.supervisord_conf import ProgramConfig, SupervisordConfig
from browser_stack.errors import ConfigError
from browser_stack.stack import (
    PORT_BY_NAME,
    PORT_PROGRAMS,
    PROGRAMS,
    XVNC_NAMES,
    Program,
    split_display,
)

SIDECAR_PROGRAM = "browser-stack"
# What each program runs, to recognise one configured under another name.
RUNS = {
    Program.TIGERVNC: (*XVNC_NAMES, "vncserver", "tigervncserver"),
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
KNOWN_EXECUTABLES = tuple(name for names in RUNS.values() for name in names)
# Signals on which Chromium's browser process shuts down and ends its children.
CLEAN_SHUTDOWN_SIGNALS = frozenset({"INT", "TERM", "HUP"})
MAIN_RPCINTERFACE = "supervisor.rpcinterface:make_main_rpcinterface"
RPC_NAMESPACE = "supervisor"  # the sidecar calls supervisor.getState, ...
# Context.origins of a variable supervisord sets itself: SUPERVISOR_SERVER_URL
# from its own first server, or from the program's serverurl= (this suffix).
SUPERVISORD_ITSELF = "supervisord's own server"
SERVERURL = " serverurl="


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
    edits: tuple[Edit, ...] = ()  # what the fix says, when it can be said as edits

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.name,
            "verdict": str(self.verdict),
            "saw": self.saw,
            "fix": self.fix,
            "edits": [edit.to_dict() for edit in self.edits],
        }


def ok(name: str, saw: str) -> Check:
    return Check(name, Verdict.OK, saw)


def warn(name: str, saw: str, fix: str, edits: Sequence[Edit] = ()) -> Check:
    return Check(name, Verdict.WARN, saw, fix, tuple(edits))


def fail(name: str, saw: str, fix: str, edits: Sequence[Edit] = ()) -> Check:
    return Check(name, Verdict.FAIL, saw, fix, tuple(edits))


def remedy(edits: Sequence[Edit], why: str = "", alternative: Sequence[Edit] = ()) -> str:
    """A fix line: the edits, another way if there is one, and why."""
    text = describe(edits)
    if alternative:
        text += f" (or instead: {describe(alternative)})"
    return f"{text}: {why}" if why else text


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
    edits: tuple[Edit, ...] = ()  # the fix of the error, when it is edits


@dataclass(frozen=True)
class Executable:
    program: str
    argv0: str
    found: str | None  # the file supervisord would exec
    problem: str = ""  # why it cannot be exec'd ("" when it can)
    searched: tuple[str, ...] = ()
    section: str = ""
    edits: tuple[Edit, ...] = ()  # what makes it spawn, when that is an edit


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


def _is_layer(origin: str) -> bool:
    """An environment= that sets variables: [supervisord]'s or a program's."""
    return origin == "supervisord" or (
        origin.startswith("program:") and not origin.endswith(SERVERURL)
    )


@dataclass(frozen=True)
class Context:
    """What a fix needs beyond a check's own facts: the sidecar's environment as
    supervisord will give it, where each of its variables is set (edits.CONTAINER,
    "supervisord" or a section: the layer that wins), supervisord's files as
    written, and whether `chromium` is Debian's script."""

    env: Mapping[str, str] = field(default_factory=dict)
    origins: Mapping[str, str] = field(default_factory=dict)
    text: str = ""
    sidecar_section: str = f"program:{SIDECAR_PROGRAM}"
    debian_chromium: bool = False

    def origin_text(self, name: str) -> str:
        origin = self.origins.get(name, CONTAINER)
        if origin == CONTAINER:
            return "the container's environment"
        if origin.endswith(SERVERURL):
            return f"[{origin.removesuffix(SERVERURL)}]{SERVERURL}"
        if _is_layer(origin):
            return f"[{origin}] environment="
        return origin

    def where(self, name: str) -> str:
        """Where an edit of the variable takes effect: the layer that sets it."""
        origin = self.origins.get(name, CONTAINER)
        if origin == CONTAINER or _is_layer(origin):
            return origin
        return self.sidecar_section  # set by supervisord itself: override it there

    def give(self, name: str, value: str) -> SetEnv | None:
        """The edit that gives the sidecar name=value where its value is set now,
        if the sidecar still accepts its settings then."""
        try:
            Settings.from_env({**self.env, name: value})
        except ConfigError:
            return None
        return SetEnv(name, value, self.where(name))

    def literal(self, words: Sequence[str]) -> bool:
        """Whether the words are written so in the files (not made by %(ENV_X)s)."""
        if not words or not self.text:
            return False
        pattern = r"\s+".join(re.escape(w.replace("%", "%%")) for w in words)
        return re.search(rf"(?<!\S){pattern}(?!\S)", self.text) is not None


# --- the checks ------------------------------------------------------------------


def check_settings(
    settings: Settings | None, error: str, variable: str | None = None, ctx: Context | None = None
) -> Check:
    if settings is None:
        if variable is None:
            return fail(
                "sidecar-settings",
                error,
                "fix the variable named (README: Configuration); `serve` refuses to start with it",
            )
        where = (ctx or Context()).where(variable)
        edits = [SetEnv(variable, None, where)]
        return fail(
            "sidecar-settings",
            error,
            remedy(edits, "its default then applies; `serve` refuses to start with it as it is"),
            edits,
        )
    ports = settings.program_ports
    text = (
        f"listen {settings.listen}, display {settings.display}, programs on cdp {ports['cdp']}, "
        f"mcp {ports['mcp']}, vnc {ports['vnc']}, ws {ports['vnc_ws']}"
    )
    if settings.activation == "proxy":
        text += " (behind the activation proxy)"
    mode = f"{'lazy' if settings.lazy else 'eager'} ({settings.switch})"
    idle = f"after {settings.idle_timeout_s:g} s" if settings.idle_timeout_s else "off"
    text += f", {mode}, idle stop {idle} ({settings.idle_timeout_source})"
    disabled = settings.disabled
    if disabled:
        text += ", turned off by the deployment (never started): " + ", ".join(
            f"{program} ({name})" for program, name in disabled.items()
        )
    return ok("sidecar-settings", text)


def check_supervisord(source: Source) -> Check:
    if source.error:
        return fail("supervisord", source.error, source.fix, source.edits)
    if source.notes:
        return warn("supervisord", f"{source.detail}; " + "; ".join(source.notes), source.fix)
    return ok("supervisord", source.detail)


def _reaches(server_host: str, host: str) -> bool:
    anywhere = ("", "*", "0.0.0.0", "::")
    local = ("localhost", "127.0.0.1", "::1")
    return (
        server_host in anywhere or server_host == host or (server_host in local and host in local)
    )


def _password_matches(configured: str, given: str | None) -> bool:
    if given is None:
        return False
    if configured.startswith("{SHA}"):
        return hashlib.sha1(given.encode()).hexdigest() == configured[5:]
    return configured == given


def check_supervisor_rpc(supervisord: SupervisordConfig, settings: Settings, ctx: Context) -> Check:
    """The sidecar reaches supervisord's XML-RPC at its SUPERVISOR_SERVER_URL with
    the credentials it has, and finds the supervisor interface there."""
    name = "supervisor-rpc"
    url = settings.supervisor_url
    interfaces = dict(supervisord.rpcinterfaces)
    edits: list[Edit]
    if interfaces.get(RPC_NAMESPACE) != MAIN_RPCINTERFACE:
        edits = [
            SetOption(
                f"rpcinterface:{RPC_NAMESPACE}",
                "supervisor.rpcinterface_factory",
                MAIN_RPCINTERFACE,
            )
        ]
        seen = ", ".join(f"[rpcinterface:{n}] {f}" for n, f in interfaces.items()) or "none"
        return fail(
            name,
            f"no [rpcinterface:{RPC_NAMESPACE}] with {MAIN_RPCINTERFACE} (rpcinterfaces: {seen}): "
            "supervisord answers none of the sidecar's calls",
            remedy(edits),
            edits,
        )
    servers = supervisord.servers
    if url.startswith("unix://"):
        path = os.path.normpath(url.removeprefix("unix://"))
        matching = [s for s in servers if s.family == "unix" and os.path.normpath(s.file) == path]
    else:
        parts = urllib.parse.urlsplit(url)
        matching = [
            s
            for s in servers
            if s.family == "inet"
            and s.port == parts.port
            and _reaches(s.host, parts.hostname or "")
        ]
    if not matching:
        listed = ", ".join(s.url for s in servers) or "none"
        origin = ctx.origins.get("SUPERVISOR_SERVER_URL", CONTAINER)
        if servers and origin.endswith(SERVERURL):
            edits = [SetOption(ctx.sidecar_section, "serverurl", None)]
        elif servers and _is_layer(origin):
            # Unset there, supervisord gives its programs its own first server's URL.
            edits = [SetEnv("SUPERVISOR_SERVER_URL", None, origin)]
        elif servers:
            edits = [SetEnv("SUPERVISOR_SERVER_URL", servers[0].url, ctx.sidecar_section)]
        elif url.startswith("unix://"):
            edits = [SetOption("unix_http_server", "file", url.removeprefix("unix://"))]
        else:
            parts = urllib.parse.urlsplit(url)
            edits = [SetOption("inet_http_server", "port", f"{parts.hostname}:{parts.port}")]
        return fail(
            name,
            f"the sidecar's SUPERVISOR_SERVER_URL={url} "
            f"({ctx.origin_text('SUPERVISOR_SERVER_URL')}) is none of supervisord's servers "
            f"({listed})",
            remedy(edits),
            edits,
        )
    server = matching[0]
    if server.username is not None:
        has = settings.supervisor_username is not None
        right = server.username == settings.supervisor_username and _password_matches(
            server.password or "", settings.supervisor_password
        )
        if not right:
            what = "does not match" if has else "is not set"
            return fail(
                name,
                f"[{server.section}] asks for a username and password; the sidecar's "
                f"SUPERVISOR_USERNAME/SUPERVISOR_PASSWORD {what}",
                f"set SUPERVISOR_USERNAME and SUPERVISOR_PASSWORD in [{ctx.sidecar_section}] "
                f"environment= to [{server.section}]'s username= and password=",
            )
    auth = "with its credentials" if server.username is not None else "without credentials"
    return ok(
        name,
        f"the sidecar reaches {url} ({ctx.origin_text('SUPERVISOR_SERVER_URL')}) {auth}; "
        f"[rpcinterface:{RPC_NAMESPACE}] is there",
    )


def runs(config: ProgramConfig, program: Program) -> bool:
    """Whether a program's command runs what `program` is (by name, not by config)."""
    words = unwrap(config.argv, KNOWN_EXECUTABLES)[0][:3]
    if program == Program.MCP_SERVER_BROWSER:
        return any("mcp-server-browser" in word for word in words)
    return any(os.path.basename(word) in RUNS[program] for word in words)


def check_programs(programs: Mapping[str, ProgramConfig]) -> Check:
    problems: list[str] = []
    fixes: list[str] = []
    edits: list[Edit] = []
    sayable = True
    for program in PROGRAMS:
        config = programs.get(program)
        if config is not None and config.group == program:
            continue
        section = f"program:{program}"
        if config is not None:
            group = f"group:{config.group}"
            members = [c.name for c in programs.values() if c.group == config.group]
            rest = [n for n in members if n != program]
            change: Edit = (
                SetOption(group, "programs", ",".join(rest)) if rest else RemoveSection(group)
            )
            problems.append(f"{program} is in [{group}]")
            fixes.append(change.text())
            edits.append(change)
            continue
        processes = [c for c in programs.values() if c.group == program and c.section == section]
        if processes:
            names = ", ".join(c.name for c in processes)
            problems.append(f"[{section}] runs as {names} (numprocs= or process_name=)")
            change_all = [
                SetOption(section, "numprocs", None),
                SetOption(section, "process_name", None),
            ]
            fixes.append(describe(change_all))
            edits += change_all
            continue
        runners = [c for c in programs.values() if c.name not in PROGRAMS and runs(c, program)]
        if runners:
            other = runners[0].section or f"program:{runners[0].name}"
            rename = RenameSection(other, section)
            problems.append(f"no {program}, but [{other}] runs {RUNS[program][0]}")
            fixes.append(rename.text())
            edits.append(rename)
        else:
            problems.append(f"no {program}")
            fixes.append(f"add [{section}] (supervisord.d/browser-stack-programs.conf has it)")
            sayable = False
    if not problems:
        return ok("programs", ", ".join(PROGRAMS) + ": each configured, as its own group")
    return fail(
        "programs",
        "; ".join(problems),
        "; ".join(fixes) + " (the sidecar drives exactly these five names, outside any group)",
        edits if sayable else (),
    )


def is_sidecar(argv: Sequence[str]) -> bool:
    """`browser-stack serve` or `python -m browser_stack serve`."""
    if "serve" not in argv:
        return False
    if argv and os.path.basename(argv[0]) == SIDECAR_PROGRAM:
        return True
    return any(a == "-m" and b == "browser_stack" for a, b in itertools.pairwise(argv))


def sidecar_of(programs: Mapping[str, ProgramConfig]) -> ProgramConfig | None:
    return next((c for c in programs.values() if is_sidecar(c.argv)), None)


def check_sidecar_program(programs: Mapping[str, ProgramConfig]) -> Check:
    config = sidecar_of(programs)
    if config is None:
        return fail(
            "sidecar-program",
            "no program runs `browser-stack serve`",
            "copy supervisord.d/browser-stack.conf into supervisord's include directory "
            "(/opt/gem/supervisord/ in the AIO image)",
        )
    section = config.section or f"program:{config.name}"
    problems = []
    edits: list[Edit] = []
    if not config.autostart:
        problems.append("autostart=false")
        edits.append(SetOption(section, "autostart", "true"))
    if config.autorestart == "false":
        problems.append("autorestart=false")
        edits.append(SetOption(section, "autorestart", "true"))
    if problems:
        return fail(
            "sidecar-program",
            f"[{section}] runs `{config.command}` with {' and '.join(problems)}",
            remedy(edits, "the sidecar runs from boot in every mode, and comes back if it dies"),
            edits,
        )
    restart = {"true": ", autorestart", "unexpected": ", autorestart=unexpected", None: ""}
    return ok(
        "sidecar-program",
        f"[{section}] runs `{config.command}`, autostart{restart[config.autorestart]}",
    )


def check_autostart(
    programs: Mapping[str, ProgramConfig],
    lazy: bool,
    switch: str,
    disabled: Mapping[str, str] | None = None,
) -> Check:
    """`disabled`: the programs the deployment turned off (and the variable), which
    start at boot in neither mode."""
    off_for_good = dict(disabled or {})
    present = [p for p in PROGRAMS if p in programs]
    which = "all five" if len(present) == len(PROGRAMS) else ", ".join(present)
    also = (
        "; turned off by the deployment: "
        + ", ".join(f"{p} ({name})" for p, name in off_for_good.items())
        if off_for_good
        else ""
    )

    def follow(names: Sequence[str]) -> list[Edit]:
        return [
            SetOption(
                programs[p].section or f"program:{p}",
                "autostart",
                "%(ENV_AUTOSTART_BROWSER_STACK)s",
            )
            for p in names
        ]

    if lazy:
        on = [p for p in present if programs[p].autostart]
        if on:
            edits = follow(on)
            return fail(
                "autostart",
                f"lazy ({switch}), but autostart=true for {', '.join(on)}: "
                "supervisord starts them at boot",
                remedy(
                    edits,
                    "their autostart then follows the switch, as in the standalone programs "
                    "file; in the AIO image, boot through browser-stack-entrypoint --aio, which "
                    "sets DISABLE_BROWSER, DISABLE_MCP_BROWSER and DISABLE_VNC",
                ),
                edits,
            )
        return ok("autostart", f"lazy ({switch}): autostart=false for {which}{also}")
    off = [p for p in present if not programs[p].autostart and p not in off_for_good]
    if off:
        edits = follow(off)
        return warn(
            "autostart",
            f"eager ({switch}), but autostart=false for {', '.join(off)}: "
            "they start on the first ensure",
            remedy(edits, "or set DISABLE_BROWSER_STACK=true to start the whole stack on demand"),
            edits,
        )
    on = [p for p in present if p not in off_for_good]
    which = which if len(on) == len(PROGRAMS) else ", ".join(on) or "none"
    return ok("autostart", f"eager ({switch}): autostart=true for {which}{also}")


def _flag_text(value: bool | None) -> str:
    return "(not visible)" if value is None else str(value).lower()


def runs_chromium_itself(argv: Sequence[str], main_argv: Sequence[str] | None) -> bool | None:
    """Whether the browser program's own process is Chromium, so that a signal
    to it alone reaches the browser: what runs now (live), else whether the
    command names Chromium (Debian's /usr/bin/chromium script execs it), itself
    or through wrappers that exec it (`sh -c 'exec chromium ...'`). None: a
    command that may be a wrapper, not running."""
    if main_argv:
        return os.path.basename(main_argv[0]) in RUNS[Program.BROWSER]
    words, direct = unwrap(argv, RUNS[Program.BROWSER])
    if direct and words and os.path.basename(words[0]) in RUNS[Program.BROWSER]:
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


def _stop_edits(browser: ProgramConfig, direct: bool | None) -> list[Edit]:
    section = browser.section or f"program:{Program.BROWSER}"
    edits: list[Edit] = [SetOption(section, "killasgroup", "true")]
    if not leaves_no_child(browser.stopsignal, browser.stopasgroup, True, direct):
        edits.append(SetOption(section, "stopasgroup", "true"))
    return edits


def _signal_edits(browser: ProgramConfig, direct: bool | None) -> list[Edit]:
    section = browser.section or f"program:{Program.BROWSER}"
    edits: list[Edit] = [SetOption(section, "stopsignal", "INT")]
    if not keeps_cookies("INT", browser.stopasgroup, direct):
        edits.append(SetOption(section, "stopasgroup", "true"))
    return edits


STOP_WHY = (
    "no Chromium process may outlive a stop (on INT, TERM or HUP Chromium ends its children; "
    "killasgroup SIGKILLs the whole group after stopwaitsecs)"
)
SIGNAL_WHY = (
    "INT keeps the cookies whether it reaches Chromium alone or with its group; "
    "or keep BROWSER_STACK_IDLE_TIMEOUT=0"
)


def check_browser_stop(browser: ProgramConfig, direct: bool | None) -> Check:
    sig = browser.stopsignal
    edits = _stop_edits(browser, direct)
    fix = remedy(edits, STOP_WHY)
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
        return warn("browser-stop", f"{seen}: {why}", fix, edits)
    if not browser.killasgroup:
        why = "a browser still running after stopwaitsecs is SIGKILLed alone; its children stay"
    else:
        why = f"SIG{sig} goes to {argv0} alone, not to Chromium: a wrapper that dies on it "
        why += "leaves Chromium running"
    return fail("browser-stop", f"{seen}: {why}", fix, edits)


def check_browser_stop_signal(
    browser: ProgramConfig, direct: bool | None, idle_timeout_s: float
) -> Check:
    sig = browser.stopsignal
    seen = _signal_text(browser, direct)
    kept = keeps_cookies(sig, browser.stopasgroup, direct)
    edits = _signal_edits(browser, direct)
    fix = remedy(edits, SIGNAL_WHY)
    if kept:
        return ok("browser-stop-signal", f"{seen}: Chromium commits its cookies before it exits")
    if kept is None:
        return warn(
            "browser-stop-signal",
            f"{seen}: whether SIG{sig} reaches Chromium as it must to keep the cookies "
            "(INT: to it or its group; HUP: to it alone) is not visible here",
            fix,
            edits,
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
            fix,
            edits,
        )
    return warn(
        "browser-stop-signal",
        f"{seen}; idle stop is off here, so only explicit stops (in lazy mode it is on "
        f"unless BROWSER_STACK_IDLE_TIMEOUT=0: after {LAZY_IDLE_TIMEOUT_S:g} s by default)",
        fix,
        edits,
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


def browser_args(
    argvs: Sequence[Sequence[str]], debian: bool = False
) -> tuple[list[str], bool] | None:
    """The arguments Chromium's browser process reads, and whether through
    Debian's script: what runs (live: the process without --type=), else the
    configured command, unwrapped. None: neither shows Chromium."""
    for argv in argvs[1:]:
        chromium = bool(argv) and os.path.basename(argv[0]) in RUNS[Program.BROWSER]
        if chromium and not any(word.startswith("--type=") for word in argv):
            return list(argv[1:]), False
    if not argvs:
        return None
    words, _direct = unwrap(argvs[0], RUNS[Program.BROWSER])
    if not words or os.path.basename(words[0]) not in RUNS[Program.BROWSER]:
        return None
    return words[1:], debian


def check_browser_profile(
    argvs: Sequence[Sequence[str]], facts: PathFacts | None, debian: bool = False
) -> Check:
    found = browser_args(argvs, debian)
    switch = chromium_switch(found[0], "user-data-dir", debian=found[1]) if found else None
    fix = (
        "pass --user-data-dir=DIR to Chromium with DIR a fixed directory on the container's "
        "disk or a volume, writable by the browser's user (e.g. /var/lib/browser-stack/profile)"
    )
    if switch is None or not switch.value:
        return warn(
            "browser-profile",
            "no --user-data-dir in the browser's command: Chromium picks its default profile "
            "under $HOME",
            fix,
        )
    value = switch.value
    if not value.startswith("/") or any(c in value for c in "$~`"):
        return warn(
            "browser-profile",
            f"--user-data-dir={value} is not a fixed absolute path: no shell expands it, and "
            "Chromium takes it relative to its working directory",
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
    port = PORT_BY_NAME[kind]
    return port.internal_variable if settings.activation == "proxy" else port.variable


@dataclass(frozen=True)
class Item:
    """One thing a command line says, and when it is wrong, what makes it right:
    edits (first choice), other edits, or words when no edit can say it."""

    text: str
    bad: bool = False
    edits: tuple[Edit, ...] = ()
    alternative: tuple[Edit, ...] = ()
    fix: str = ""


def _port(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() and int(value) <= 65535 else None


def _port_item(
    what: str,
    seen: str | None,
    port: int | None,
    kind: str,
    settings: Settings,
    ctx: Context,
    program: Sequence[Edit],
    program_text: str,
    *,
    sidecar_may_follow: bool = True,
) -> Item:
    """`seen`: the value as the program reads it (None: not given); `port`: where
    it listens (or connects) then (None: nowhere). `program`: the edits that give
    the program the sidecar's port, `program_text` the same in words. With
    `sidecar_may_follow`, moving the sidecar's port variable to the program's comes
    first, when the sidecar accepts it (not in proxy mode onto a public port)."""
    want = settings.program_ports[kind]
    if port == want:
        return Item(f"{what} {want}")
    if seen is None:
        text = f"no {what} (the sidecar probes {want})"
    elif port is None:
        text = f"{what} {seen!r}, which is no port (the sidecar probes {want})"
    elif port == 0:
        text = f"{what} 0, a port picked at random (the sidecar probes {want})"
    else:
        text = f"{what} {port}, but the sidecar probes {want}"
    follow = ctx.give(port_var(kind, settings), str(port)) if sidecar_may_follow and port else None
    first = (follow,) if follow else tuple(program)
    second = tuple(program) if follow else ()
    return Item(text, True, first, second, "" if first else f"{program_text} {want}")


def _command_check(name: str, items: Sequence[Item], unseen: str | None = None) -> Check:
    if unseen is not None:
        return warn(name, unseen, "make sure the command behind it uses the sidecar's ports")
    bad = [item for item in items if item.bad]
    if not bad:
        return ok(name, ", ".join(item.text for item in items))
    saw = "; ".join(item.text for item in bad)
    if all(item.edits for item in bad):
        edits = [edit for item in bad for edit in item.edits]
        others = [edit for item in bad for edit in item.alternative or item.edits]
        alternative = others if any(item.alternative for item in bad) else []
        return fail(name, saw, remedy(edits, alternative=alternative), edits)
    return fail(name, saw, "; ".join(item.fix or describe(item.edits) for item in bad))


def _words_edit(
    section: str, ctx: Context, old: Sequence[str] | None, new: Sequence[str]
) -> list[Edit]:
    """Replace `old` with `new` when `old` is written so in the files; append
    `new` when there is no `old`."""
    if old is None:
        return [AppendArgs(section, tuple(new))]
    if ctx.literal(old):
        return [ReplaceArgs(section, tuple(old), tuple(new))]
    return []


def check_tigervnc_command(
    argvs: Sequence[Sequence[str]],
    settings: Settings,
    ctx: Context | None = None,
    section: str = f"program:{Program.TIGERVNC}",
) -> Check:
    ctx = ctx or Context()
    argv, _direct = unwrap(argvs[0] if argvs else [], KNOWN_EXECUTABLES)
    args = argv[1:]
    number = xvnc_display(args)
    rfbport = xvnc_parameter(args, "rfbport")
    is_xvnc = bool(argv) and os.path.basename(argv[0]) in RUNS[Program.TIGERVNC]
    if not is_xvnc and number is None and rfbport is None:
        return _command_check(
            "tigervnc-command",
            [],
            f"`{' '.join(argv)}` shows neither a display nor -rfbport (a wrapper script?)",
        )
    # Xvnc's defaults: display :0, port 5900 + the display number.
    display = 0 if number is None else number
    want = settings.display_number
    items: list[Item] = []
    if display == want:
        items.append(Item(f"display :{display}"))
    else:
        old = None if number is None else [f":{number}"]
        program = (
            _words_edit(section, ctx, old, [f":{want}"])
            if old
            else [AppendArgs(section, (f":{want}",))]
        )
        follow = ctx.give("DISPLAY", f":{display}")
        first = (follow,) if follow else tuple(program)
        items.append(
            Item(
                f"display :{display}, but the sidecar expects :{want}",
                True,
                first,
                tuple(program) if follow else (),
                f"run Xvnc on :{want}",
            )
        )
    refused = (
        rfbport is not None and rfbport.words[0].startswith("--") and "=" not in rfbport.words[0]
    )
    if refused:
        assert rfbport is not None
        fixed = _words_edit(
            section, ctx, rfbport.words, ["-rfbport", str(settings.program_ports["vnc"])]
        )
        items.append(
            Item(
                f"`{rfbport.words[0]}` with a space, which Xvnc refuses (it exits)",
                True,
                tuple(fixed),
                (),
                f"write -rfbport {settings.program_ports['vnc']}",
            )
        )
        return _command_check("tigervnc-command", items)
    seen = rfbport.value if rfbport is not None else str(5900 + display)
    port = _port(seen)
    vnc = settings.program_ports["vnc"]
    program = _words_edit(section, ctx, rfbport.words if rfbport else None, ["-rfbport", str(vnc)])
    if rfbport is not None and not program:
        program = [AppendArgs(section, ("-rfbport", str(vnc)))]  # Xvnc takes the last
    items.append(
        _port_item("-rfbport", seen, port, "vnc", settings, ctx, program, "give Xvnc -rfbport")
    )
    return _command_check("tigervnc-command", items)


def check_browser_command(
    argvs: Sequence[Sequence[str]],
    settings: Settings,
    ctx: Context | None = None,
    section: str = f"program:{Program.BROWSER}",
) -> Check:
    ctx = ctx or Context()
    found = browser_args(argvs, ctx.debian_chromium)
    if found is None:
        argv = argvs[0] if argvs else []
        return _command_check(
            "browser-command",
            [],
            f"`{' '.join(argv)}` shows no --remote-debugging-port (a wrapper script?)",
        )
    args, debian = found
    name = "remote-debugging-port"
    switch = chromium_switch(args, name, debian=debian)
    want = settings.program_ports["cdp"]
    flag = f"--{name}={want}"
    if switch is None:
        program: list[Edit] = [AppendArgs(section, (flag,))]
    else:
        program = _words_edit(section, ctx, switch.words, [flag])
        appended = chromium_switch([*args, flag], name, debian=debian)
        if not program and appended is not None and appended.value == str(want):
            program = [AppendArgs(section, (flag,))]
    seen = None if switch is None else switch.value
    port = None if seen is None else chromium_port(seen)
    item = _port_item(
        "--remote-debugging-port",
        seen,
        port,
        "cdp",
        settings,
        ctx,
        program,
        f"in [{section}] command=, give Chromium --{name}=",
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


def check_mcp_command(
    argvs: Sequence[Sequence[str]],
    settings: Settings,
    ctx: Context | None = None,
    section: str = f"program:{Program.MCP_SERVER_BROWSER}",
) -> Check:
    ctx = ctx or Context()
    argv, _direct = unwrap(argvs[0] if argvs else [], KNOWN_EXECUTABLES)
    port = option_value(argv[1:], "--port")
    endpoint = option_value(argv[1:], "--cdp-endpoint")
    cdp = settings.program_ports["cdp"]
    url = f"http://127.0.0.1:{cdp}/json/version"
    if endpoint is None:
        edits = [AppendArgs(section, ("--cdp-endpoint", url))]
        return warn(
            "mcp-command",
            "no --cdp-endpoint: mcp-server-browser launches a browser of its own instead of "
            "driving the stack's Chromium",
            remedy(edits),
            edits,
        )
    mcp = settings.program_ports["mcp"]
    seen_port = None if port is None else port.value
    items = [
        _port_item(
            "--port",
            seen_port,
            _port(seen_port),
            "mcp",
            settings,
            ctx,
            [AppendArgs(section, ("--port", str(mcp)))],  # the last one counts
            "give mcp-server-browser --port",
        ),
        _port_item(
            f"--cdp-endpoint {endpoint.value} on port",
            endpoint_port(endpoint.value),
            _port(endpoint_port(endpoint.value)),
            "cdp",
            settings,
            ctx,
            [AppendArgs(section, ("--cdp-endpoint", url))],
            "point --cdp-endpoint at port",
            sidecar_may_follow=False,  # the sidecar's CDP port is Chromium's too
        ),
    ]
    return _command_check("mcp-command", items)


LISTEN_PREFIXES = ("ws-l:", "ws-listen:", "l-ws:")
TARGET_PREFIXES = ("tcp:", "tcp-connect:", "tcp-c:")


def websocket_words(argv: Sequence[str]) -> tuple[list[str] | None, list[str] | None]:
    """The words that say the listen port and the target port of a websocat or
    websockify command line (the port last in each)."""
    listen = target = None
    if argv and os.path.basename(argv[0]) == "websockify":
        # websockify [options] [source_addr:]source_port target_addr:target_port
        positional = [w for w in argv[1:] if not w.startswith("-")]
        if len(positional) >= 2:
            return [positional[-2]], [positional[-1]]
        return None, None
    for i, word in enumerate(argv):
        if word.startswith(LISTEN_PREFIXES):
            listen = [word]
        elif word in ("-s", "--server-mode") and i + 1 < len(argv):
            listen = [word, argv[i + 1]]
        elif word.startswith(TARGET_PREFIXES):
            target = [word]
    return listen, target


def websocket_ports(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """(listen port, target port) of a websocat or websockify command line."""
    listen, target = websocket_words(argv)
    return (
        None if listen is None else listen[-1].rsplit(":", 1)[-1],
        None if target is None else target[-1].rsplit(":", 1)[-1],
    )


def check_websocat_command(
    argvs: Sequence[Sequence[str]],
    settings: Settings,
    ctx: Context | None = None,
    section: str = f"program:{Program.WEBSOCAT}",
) -> Check:
    ctx = ctx or Context()
    listen = target = None
    for argv in argvs:
        words = websocket_words(unwrap(argv, KNOWN_EXECUTABLES)[0])
        listen, target = listen or words[0], target or words[1]
    if listen is None and target is None:
        argv = argvs[0] if argvs else []
        return _command_check(
            "websocat-command",
            [],
            f"`{' '.join(argv)}` shows neither a listen port nor a VNC target",
        )

    def item(what: str, words: list[str] | None, kind: str, text: str, follow: bool) -> Item:
        seen = None if words is None else words[-1].rsplit(":", 1)[-1]
        want = str(settings.program_ports[kind])
        program: list[Edit] = []
        if words is not None:
            new = [
                *words[:-1],
                words[-1].rsplit(":", 1)[0] + ":" + want if ":" in words[-1] else want,
            ]
            program = _words_edit(section, ctx, words, new)
        return _port_item(
            what, seen, _port(seen), kind, settings, ctx, program, text, sidecar_may_follow=follow
        )

    return _command_check(
        "websocat-command",
        [
            item("listens on", listen, "vnc_ws", "make websocat listen on", True),
            # The sidecar's VNC port is Xvnc's too: point websocat at it.
            item("forwards to VNC port", target, "vnc", "point websocat at", False),
        ],
    )


def display_number(value: str) -> int | None:
    """The display number of "[host]:N[.S]", or None."""
    split = split_display(value)
    return None if split is None else split[1]


def check_x_clients_display(
    programs: Mapping[str, ProgramConfig],
    supervisord_env: Mapping[str, str],
    settings: Settings,
    ctx: Context | None = None,
) -> Check:
    ctx = ctx or Context()
    want = settings.display_number
    items: list[str] = []
    bad: list[str] = []
    unknown: list[str] = []
    edits: list[Edit] = []
    sayable = True
    for program in (Program.OPENBOX, Program.BROWSER):
        config = programs.get(program)
        if config is None:
            continue
        section = config.section or f"program:{program}"
        switch = None
        if program == Program.BROWSER:
            found = browser_args([config.argv], ctx.debian_chromium)
            if found is not None:
                switch = chromium_switch(found[0], "display", debian=found[1])
        own = config.environment or {}
        value = (
            (switch.value if switch else None)
            or own.get("DISPLAY")
            or supervisord_env.get("DISPLAY")
        )
        if value is None and config.environment is None:
            unknown.append(f"{program} has no DISPLAY")
            continue
        if value is not None and display_number(value) == want:
            items.append(f"{program} {value}")
            continue
        if value is None:
            bad.append(f"{program} has no DISPLAY")
        else:
            bad.append(f"{program} gets DISPLAY={value}, the X server is :{want}")
        if switch is not None and switch.value:
            fixed = _words_edit(section, ctx, switch.words, [f"--display=:{want}"])
            sayable = sayable and bool(fixed)
            edits += fixed
        else:
            edits.append(SetEnv("DISPLAY", f":{want}", section))
    if bad:
        if sayable:
            why = "or set DISPLAY for the sidecar to the display they use"
            return fail("x-clients-display", "; ".join(bad), remedy(edits, why), edits)
        return fail(
            "x-clients-display",
            "; ".join(bad),
            f"give [program:openbox] and [program:browser] DISPLAY :{want} (environment= or "
            "Chromium's --display=), or set DISPLAY for the sidecar to the display they use",
        )
    if unknown:
        return warn(
            "x-clients-display",
            "; ".join(unknown) + " in supervisord's environment (their own is not visible)",
            f'give [program:openbox] and [program:browser] environment=DISPLAY=":{want}"',
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
        if e.problem == "does not exist" and e.argv0 and "/" not in e.argv0:
            missing.setdefault(e.searched, []).append(f"{e.argv0} ({e.program})")
        else:
            other.append(f"[{e.section or 'program:' + e.program}] {e.problem}")
    parts = [
        f"{', '.join(names)} not found on PATH={os.pathsep.join(path)}"
        for path, names in missing.items()
    ]
    saw = "; ".join(parts + other) + ": supervisord cannot spawn it (spawn error, then FATAL)"
    if all(e.edits for e in bad):
        edits = [edit for e in bad for edit in e.edits]
        return fail("executables", saw, remedy(edits), edits)
    return fail(
        "executables",
        saw,
        "install what is missing, or name it by absolute path in the command (supervisord "
        "looks for argv[0] on the program's PATH: its environment=PATH=..., else its own; a "
        "relative path from its working directory); close the command's quotes; give "
        "directory= a directory that exists",
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
        kept = boot.without_ports(wait_ports or "", stack_ports) or boot.DEFAULT_AIO_WAIT_PORTS
        edits = [SetEnv("WAIT_PORTS", kept)]
        return fail(
            "wait-ports",
            f"lazy, and WAIT_PORTS={wait_ports} ({origin}) holds {', '.join(held)}: run.sh "
            "waits for ports that open only on first use, and the container never finishes "
            "booting",
            remedy(
                edits,
                "browser-stack-entrypoint --aio does this when it is the image's ENTRYPOINT "
                "and the switch is on",
            ),
            edits,
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


def check_exposure(
    env: Mapping[str, str], nginx_route: str | None, ctx: Context | None = None
) -> Check:
    """`env`: the sidecar's environment."""
    ctx = ctx or Context()
    token = bool(env.get("BROWSER_STACK_TOKEN"))
    try:
        listen = parse_listen(env.get("BROWSER_STACK_LISTEN", "").strip() or DEFAULT_LISTEN)
    except ConfigError as exc:
        return not_checked("sidecar-exposure", exc.message)
    if not listen.is_loopback and not token:
        edits = [SetEnv("BROWSER_STACK_LISTEN", None, ctx.where("BROWSER_STACK_LISTEN"))]
        return fail(
            "sidecar-exposure",
            f"BROWSER_STACK_LISTEN={listen} is not loopback and BROWSER_STACK_TOKEN is not set: "
            "anyone who reaches it can start and stop the stack",
            remedy(edits, f"it then listens on {DEFAULT_LISTEN}; or set BROWSER_STACK_TOKEN"),
            edits,
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
