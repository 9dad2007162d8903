"""browser-stack doctor: each assumption the sidecar makes about its host, as a
named check with a verdict (ok / warn / fail), what it saw, and a fix in one line.

Live (the default) asks the running supervisord (getPID, getAllConfigInfo,
getAllProcessInfo), reads supervisord's own environment and files through
/proc/PID, and looks at this machine. Static (`--static --config PATH`) reads
supervisord's files with supervisor's parser in the environment the entrypoint
boots them with, with no supervisord running, so an image build can run it.

Facts are gathered first (`gather_live`, `gather_static`); every check is a
pure function of plain data, and `run_checks` runs them as the table `CHECKS`
says: in its order, each when what it needs is known, else "not checked". The
doctor reads; it never starts, stops or signals anything.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import stat
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

from browser_stack import memory, switches, xlock
from browser_stack.config import DEFAULT_SUPERVISOR_URL, Settings
from browser_stack.core_types import PortHolder
from browser_stack.doctor import boot
from browser_stack.doctor.checks import (
    RUNS,
    SERVERURL,
    SIDECAR_PROGRAM,
    SUPERVISORD_ITSELF,
    Check,
    Context,
    Executable,
    PathFacts,
    Source,
    Verdict,
    XLock,
    browser_args,
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
    is_sidecar,
    not_checked,
    remedy,
    runs_chromium_itself,
    sidecar_of,
)
from browser_stack.doctor.command_lines import DEBIAN_CHROMIUM_MARK, chromium_switch, unwrap
from browser_stack.doctor.edits import CONTAINER, Edit, SetEnv, SetOption
from browser_stack.doctor.supervisord_conf import (
    ConfigRead,
    ProgramConfig,
    SupervisordConfig,
    UnreadableConfig,
    read_config,
    signal_name,
)
from browser_stack.errors import BrowserStackError, ConfigError, SupervisorUnavailable
from browser_stack.port_owner import find_holder
from browser_stack.stack import PROGRAMS, Program
from browser_stack.supervisor import XmlRpcSupervisor

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# Where the Dockerfile puts the gateway route, relative to supervisord's config.
NGINX_ROUTE = Path("nginx") / "browser-stack.conf"


@dataclass(frozen=True)
class DoctorFacts:
    source: Source
    env: Mapping[str, str]
    settings: Settings | None = None
    settings_error: str = ""
    settings_variable: str | None = None
    lazy: bool | None = None
    switch_error: str = ""
    programs: Mapping[str, ProgramConfig] | None = None
    # The environment supervisord runs with, and where it was read.
    boot_env: Mapping[str, str] = field(default_factory=dict)
    boot_env_origin: str = ""
    # Live: each of the five's running process tree (pids, argv of each).
    pids: Mapping[str, frozenset[int]] = field(default_factory=dict)
    running_argvs: Mapping[str, tuple[tuple[str, ...], ...]] = field(default_factory=dict)
    executables: Mapping[str, Executable] = field(default_factory=dict)
    profile: PathFacts | None = None
    cgroup: Mapping[str, Any] = field(default_factory=dict)
    nginx_route: str | None = None
    # Live only (None in static mode).
    holders: Mapping[str, PortHolder | None] | None = None
    x_lock: XLock | None = None
    pidfd_error: str | None = None
    # The sidecar's environment and where each variable is set, the files as
    # written: what fixes are made of.
    ctx: Context = field(default_factory=Context)
    supervisord_config: SupervisordConfig | None = None

    @property
    def live(self) -> bool:
        return self.source.mode == "live"


# --- the checks, as a table ---------------------------------------------------------

T = TypeVar("T")

NO_CONFIG = "supervisord's configuration is not known"
NO_SETTINGS = "the sidecar's settings are invalid"
NO_PROCESSES = "supervisord's processes are not known"


@dataclass(frozen=True)
class Need:
    """Something a check needs of the facts: `missing` says why it is not there,
    or None when it is."""

    missing: Callable[[DoctorFacts], str | None]


def _present(value: object, why: str) -> str | None:
    return None if value is not None else why


# supervisord's programs, read from its files or from the running supervisord.
PROGRAMS_READ = Need(lambda f: _present(f.programs, NO_CONFIG))
# Its [supervisord] and [unix_http_server]/[inet_http_server] sections too.
SUPERVISORD_READ = Need(lambda f: _present(f.supervisord_config, NO_CONFIG))
# A program that runs `browser-stack serve`.
SIDECAR = Need(
    lambda f: _present(sidecar_of(f.programs or {}), "no program runs `browser-stack serve`")
)
# The sidecar's settings, valid.
SETTINGS = Need(lambda f: _present(f.settings, NO_SETTINGS))
# The switch (lazy or eager), valid.
SWITCH = Need(lambda f: _present(f.lazy, f.switch_error))
# Live: whose a port or the X lock is cannot be told without the programs' pids.
PROCESSES = Need(lambda f: None if f.holders is not None and f.x_lock is not None else NO_PROCESSES)


@functools.cache
def program_section(program: Program) -> Need:
    """[program:NAME] for one of the five."""
    return Need(lambda f: _present((f.programs or {}).get(program), f"no [program:{program}]"))


@dataclass(frozen=True)
class Given:
    """The facts, as a check whose needs are met reads them."""

    facts: DoctorFacts

    @functools.cached_property
    def ctx(self) -> Context:
        # Without the files, the environment at hand is the best guess of the sidecar's.
        ctx = self.facts.ctx
        return ctx if ctx.env else dataclasses.replace(ctx, env=self.facts.env)

    @property
    def settings(self) -> Settings:
        return _needed(self.facts.settings)

    @property
    def programs(self) -> Mapping[str, ProgramConfig]:
        return _needed(self.facts.programs)

    @property
    def lazy(self) -> bool:
        return _needed(self.facts.lazy)

    def config(self, program: Program) -> ProgramConfig:
        return _needed(self.programs.get(program))

    def argvs(self, program: Program) -> list[Sequence[str]]:
        """The configured command, then (live) what its processes run."""
        config = (self.facts.programs or {}).get(program)
        configured: list[Sequence[str]] = [config.argv] if config is not None else []
        return configured + list(self.facts.running_argvs.get(program, ()))

    def chromium_itself(self) -> bool | None:
        """Whether the browser program's command runs Chromium itself."""
        running = self.facts.running_argvs.get(Program.BROWSER, ())
        main_argv = running[0] if running else None
        return runs_chromium_itself(self.config(Program.BROWSER).argv, main_argv)


def _needed(value: T | None) -> T:
    if value is None:  # the table's needs keep a check from running without it
        raise LookupError("a check ran without what the table says it needs")
    return value


@dataclass(frozen=True)
class CheckSpec:
    name: str
    # In order: the first one missing makes the check "not checked", saying why.
    needs: tuple[Need, ...]
    run: Callable[[Given], Check]
    # Only against a running supervisord; absent from a static report.
    live_only: bool = False


CommandCheck = Callable[[Sequence[Sequence[str]], Settings, Context, str], Check]


def _command(name: str, program: Program, check: CommandCheck) -> CheckSpec:
    """A check of one program's command line, as configured and as running."""

    def run(given: Given) -> Check:
        section = given.config(program).section or f"program:{program}"
        return check(given.argvs(program), given.settings, given.ctx, section)

    return CheckSpec(name, (SETTINGS, PROGRAMS_READ, program_section(program)), run)


def _autostart(given: Given) -> Check:
    settings = given.facts.settings
    disabled = {str(p): v for p, v in settings.disabled.items()} if settings else {}
    describe = switches.describe(given.facts.env)
    return check_autostart(given.programs, given.lazy, describe, disabled)


def _browser_stop_signal(given: Given) -> Check:
    settings = given.facts.settings
    idle = settings.idle_timeout_s if settings is not None else 0.0
    browser = given.config(Program.BROWSER)
    return check_browser_stop_signal(browser, given.chromium_itself(), idle)


def _wait_ports(given: Given) -> Check:
    boot_env = given.facts.boot_env
    return check_wait_ports(
        boot_env.get("WAIT_PORTS"),
        given.lazy,
        given.settings.program_ports,
        given.facts.boot_env_origin,
    )


def _x_lock_check(given: Given) -> Check:
    tigervnc = given.facts.pids.get(Program.TIGERVNC, frozenset())
    return check_x_lock(_needed(given.facts.x_lock), given.settings.display, tigervnc)


BROWSER = program_section(Program.BROWSER)

# Every check, in the order of the report.
CHECKS: tuple[CheckSpec, ...] = (
    CheckSpec(
        "sidecar-settings",
        (),
        lambda g: check_settings(
            g.facts.settings, g.facts.settings_error, g.facts.settings_variable, g.ctx
        ),
    ),
    CheckSpec("supervisord", (), lambda g: check_supervisord(g.facts.source)),
    CheckSpec(
        "supervisor-rpc",
        (PROGRAMS_READ, SUPERVISORD_READ, SIDECAR, SETTINGS),
        lambda g: check_supervisor_rpc(_needed(g.facts.supervisord_config), g.settings, g.ctx),
    ),
    CheckSpec("programs", (PROGRAMS_READ,), lambda g: check_programs(g.programs)),
    CheckSpec("sidecar-program", (PROGRAMS_READ,), lambda g: check_sidecar_program(g.programs)),
    CheckSpec("autostart", (PROGRAMS_READ, SWITCH), _autostart),
    CheckSpec(
        "browser-stop",
        (PROGRAMS_READ, BROWSER),
        lambda g: check_browser_stop(g.config(Program.BROWSER), g.chromium_itself()),
    ),
    CheckSpec("browser-stop-signal", (PROGRAMS_READ, BROWSER), _browser_stop_signal),
    CheckSpec(
        "browser-profile",
        (PROGRAMS_READ, BROWSER),
        lambda g: check_browser_profile(
            g.argvs(Program.BROWSER), g.facts.profile, g.ctx.debian_chromium
        ),
    ),
    _command("tigervnc-command", Program.TIGERVNC, check_tigervnc_command),
    _command("browser-command", Program.BROWSER, check_browser_command),
    _command("mcp-command", Program.MCP_SERVER_BROWSER, check_mcp_command),
    _command("websocat-command", Program.WEBSOCAT, check_websocat_command),
    CheckSpec(
        "x-clients-display",
        (PROGRAMS_READ, SETTINGS),
        lambda g: check_x_clients_display(g.programs, g.facts.boot_env, g.settings, g.ctx),
    ),
    CheckSpec("executables", (PROGRAMS_READ,), lambda g: check_executables(g.facts.executables)),
    CheckSpec("wait-ports", (SETTINGS, SWITCH), _wait_ports),
    CheckSpec(
        "stack-ports",
        (SETTINGS, PROCESSES),
        lambda g: check_stack_ports(_needed(g.facts.holders), g.facts.pids, g.settings),
        live_only=True,
    ),
    CheckSpec("x-lock", (SETTINGS, PROCESSES), _x_lock_check, live_only=True),
    CheckSpec("pidfd", (), lambda g: check_pidfd(g.facts.pidfd_error), live_only=True),
    CheckSpec(
        "sidecar-exposure",
        (),
        lambda g: check_exposure(g.ctx.env or g.facts.env, g.facts.nginx_route, g.ctx),
    ),
    CheckSpec("cgroup-memory", (), lambda g: check_cgroup(g.facts.cgroup)),
)


def run_checks(facts: DoctorFacts) -> list[Check]:
    """Every check of the table, in its order; live-only ones only in live mode.
    A check whose input is missing (supervisord down, a program not configured,
    invalid settings) is a warning that says so: the failing check is the cause."""
    given = Given(facts)
    out = []
    for spec in CHECKS:
        if spec.live_only and not facts.live:
            continue
        why = next((w for need in spec.needs if (w := need.missing(facts)) is not None), None)
        out.append(spec.run(given) if why is None else not_checked(spec.name, why))
    return out


# --- gathering the facts -----------------------------------------------------------


def _settings(
    env: Mapping[str, str], given: Settings | None
) -> tuple[Settings | None, str, str | None]:
    """The settings, or why not and the variable at fault."""
    if given is not None:
        return given, "", None
    try:
        return Settings.from_env(env), "", None
    except ConfigError as exc:
        return None, exc.message, exc.fields.get("variable")


def _switch(env: Mapping[str, str]) -> tuple[bool | None, str]:
    try:
        return switches.is_lazy(env), ""
    except ConfigError as exc:
        return None, f"the switch is invalid: {exc.message}"


def _facts_of(
    env: Mapping[str, str],
    given: Settings | None = None,
    sidecar_env: Mapping[str, str] | None = None,
    **known: Any,
) -> tuple[Callable[..., DoctorFacts], Settings | None]:
    """DoctorFacts(source, ...) with what every gathering knows first (the
    environment, the sidecar's settings and the switch, each with why not),
    and the settings: the running sidecar's own, else from the environment
    supervisord gives it (`sidecar_env`), else from this one."""
    settings, settings_error, variable = _settings(
        env if sidecar_env is None else sidecar_env, given
    )
    lazy, switch_error = _switch(env)
    facts = functools.partial(
        DoctorFacts,
        env=env,
        settings=settings,
        settings_error=settings_error,
        settings_variable=variable,
        lazy=lazy,
        switch_error=switch_error,
        **known,
    )
    return facts, settings


def sidecar_environment(
    boot_env: Mapping[str, str], read: ConfigRead | None
) -> tuple[dict[str, str], dict[str, str], str]:
    """The environment supervisord gives the sidecar's program, as supervisord
    builds it: its own (`boot_env`), SUPERVISOR_SERVER_URL (the program's
    serverurl=, else supervisord's own first server), [supervisord]'s
    environment=, the program's environment=. Returns the values, where each is
    set (Context.origins) and the program's section."""
    values = dict(boot_env)
    origins = dict.fromkeys(boot_env, CONTAINER)
    sidecar = sidecar_of(read.programs) if read is not None else None
    if read is None or sidecar is None:
        return values, origins, f"program:{SIDECAR_PROGRAM}"
    section = sidecar.section or f"program:{sidecar.name}"
    url = sidecar.serverurl or read.supervisord.serverurl
    if url:
        values["SUPERVISOR_SERVER_URL"] = url
        origins["SUPERVISOR_SERVER_URL"] = (
            f"{section}{SERVERURL}" if sidecar.serverurl else SUPERVISORD_ITSELF
        )
    for layer, env in (
        ("supervisord", read.supervisord.environment),
        (section, sidecar.own_environment or {}),
    ):
        values.update(env)
        origins.update(dict.fromkeys(env, layer))
    return values, origins, section


def _is_debian_chromium(path: str | None) -> bool:
    """Whether `path` is Debian's chromium script (it reorders the flags)."""
    if path is None:
        return False
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError:
        return False
    return head.startswith(b"#!") and DEBIAN_CHROMIUM_MARK.encode() in head


def resolve_executable(
    argv0: str, path: Sequence[str], cwd: str, directory: str | None = None
) -> tuple[str | None, str]:
    """The file supervisord would exec for argv0, and why it cannot ("" if it can).
    supervisord looks a name with a slash up from its working directory `cwd`, a
    name without on PATH (whose relative entries are from `cwd` too), then execs
    it after changing to the program's `directory`, where a relative path must
    lead to the same file."""
    # Each path as written: stat()ed from cwd, exec()ed from the program's directory.
    written = [argv0] if "/" in argv0 else [os.path.join(d, argv0) for d in path]
    for name in written:
        candidate = os.path.join(cwd, name)  # an absolute name stays itself
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            return candidate, f"{candidate} is a directory"
        if not st.st_mode & 0o111 or not os.access(candidate, os.X_OK):
            return candidate, f"{candidate} is not executable"
        relative = not name.startswith("/")
        if directory and relative and not os.path.exists(os.path.join(directory, name)):
            return candidate, f"{name} is relative and not found from directory={directory}"
        return candidate, ""
    if "/" in argv0:
        return None, f"can't find command {argv0} (from supervisord's working directory {cwd})"
    return None, "does not exist"


def _executables(
    programs: Mapping[str, ProgramConfig], supervisord_env: Mapping[str, str], cwd: str
) -> dict[str, Executable]:
    out: dict[str, Executable] = {}
    default_path = (supervisord_env.get("PATH") or "/bin:/usr/bin:/usr/local/bin").split(os.pathsep)
    names: list[str] = [p for p in PROGRAMS if p in programs]
    names += [c.name for c in programs.values() if is_sidecar(c.argv)][:1]
    for name in names:
        config = programs[name]
        section = config.section or f"program:{name}"
        argv = config.argv
        if config.argv_error:
            problem = f"its command cannot be split ({config.argv_error}): `{config.command}`"
            out[name] = Executable(name, "", None, problem, section=section)
            continue
        if not argv:
            out[name] = Executable(name, "", None, "has an empty command=", section=section)
            continue
        directory = config.directory
        if directory and not os.path.isdir(directory):
            out[name] = Executable(
                name,
                argv[0],
                None,
                f"directory={directory} does not exist, so supervisord cannot change to it",
                section=section,
                edits=(SetOption(section, "directory", None),),
            )
            continue
        own_path = (config.environment or {}).get("PATH")
        path = own_path.split(os.pathsep) if own_path else default_path
        found, problem = resolve_executable(argv[0], path, cwd, directory)
        out[name] = Executable(name, argv[0], found, problem, tuple(path), section)
    return out


def _path_facts(path: str) -> PathFacts:
    target = Path(path)
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    writable = existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)
    fstype = ""
    best = ""
    with contextlib.suppress(OSError):
        for part in psutil.disk_partitions(all=True):
            mount = part.mountpoint
            inside = str(existing) == mount or str(existing).startswith(mount.rstrip("/") + "/")
            if inside and len(mount) >= len(best):
                best, fstype = mount, part.fstype
    return PathFacts(path, target.exists(), writable, fstype)


def _profile_facts(argvs: Sequence[Sequence[str]], debian: bool) -> PathFacts | None:
    found = browser_args(argvs, debian)
    switch = chromium_switch(found[0], "user-data-dir", debian=found[1]) if found else None
    if switch is None or not switch.value.startswith("/"):
        return None
    return _path_facts(switch.value)


def _nginx_route(config_path: str | None) -> str | None:
    if not config_path:
        return None
    route = Path(config_path).parent / NGINX_ROUTE
    return str(route) if route.exists() else None


def _host_facts(
    programs: Mapping[str, ProgramConfig] | None,
    boot_env: Mapping[str, str],
    config_path: str | None,
    running_argvs: Mapping[str, tuple[tuple[str, ...], ...]],
    cwd: str,
) -> dict[str, Any]:
    """What both modes read from this machine (blocking)."""
    facts: dict[str, Any] = {
        "cgroup": memory.cgroup_memory(),
        "nginx_route": _nginx_route(config_path),
    }
    if programs is not None:
        executables = _executables(programs, boot_env, cwd)
        facts["executables"] = executables
        browser = programs.get(Program.BROWSER)
        if browser is not None:
            argvs = [browser.argv, *running_argvs.get(Program.BROWSER, ())]
            words, _direct = unwrap(browser.argv, RUNS[Program.BROWSER])
            debian = False
            if words:
                own_path = (browser.environment or {}).get("PATH") or boot_env.get("PATH", "")
                found, _problem = resolve_executable(words[0], own_path.split(os.pathsep), cwd)
                debian = _is_debian_chromium(found)
            facts["debian_chromium"] = debian
            facts["profile"] = _profile_facts(argvs, debian)
    return facts


def _uncreatable(path: str) -> str:
    """Why `mkdir -p path` fails here ("" when it would work)."""
    existing = Path(path)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is not a directory"
    if existing != Path(path) and not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable"
    return ""


def gather_static(config: str, env: Mapping[str, str], cwd: str | None = None) -> DoctorFacts:
    """Facts from supervisord's files alone, in the environment the entrypoint
    (and the AIO image's run.sh) would boot them with. `cwd`: where supervisord
    will run (its working directory resolves relative command paths); this one
    by default, as in the image: the build step and `docker run` share its WORKDIR."""
    cwd = cwd or os.getcwd()
    facts, _ = _facts_of(env)
    try:
        boot_env = boot.boot_environment(env)
    except ConfigError as exc:
        variable = exc.fields.get("variable")
        unset: list[Edit] = [SetEnv(variable, None)] if variable else []
        source = Source(
            "static",
            config,
            error=f"browser-stack-entrypoint would refuse this environment: {exc.message}",
            fix=remedy(unset) if unset else "fix the variable named",
            edits=tuple(unset),
        )
        return facts(source)
    origin = "as browser-stack-entrypoint would pass it on"
    facts, _ = _facts_of(env, sidecar_env=boot_env, boot_env=boot_env, boot_env_origin=origin)
    created = boot.created_directories(boot_env)
    for directory in created:
        problem = _uncreatable(directory)
        if problem:
            source = Source(
                "static",
                config,
                error=f"browser-stack-entrypoint cannot create {directory} ({problem}) and exits",
                fix="set BROWSER_STACK_LOG_DIR and BROWSER_STACK_PROFILE_DIR to directories "
                "it can create",
            )
            return facts(source)
    try:
        read = read_config(config, boot_env, created)
    except UnreadableConfig as exc:
        fix = "supervisord refuses these files as they are: fix the line named"
        edits: list[Edit] = []
        if exc.missing_variable:
            fix = (
                f"set {exc.missing_variable} where supervisord starts (the image's ENV or its "
                "entrypoint), or stop the file from reading it"
            )
        if exc.option:
            edits = [SetOption(*exc.option, None)]
            fix = remedy(edits, "supervisord refuses it as it is")
        source = Source("static", config, error=exc.message, fix=fix, edits=tuple(edits))
        return facts(source)
    files = f" and {len(read.included)} included file(s)" if read.included else ""
    source = Source(
        "static",
        config,
        detail=f"read {config}{files}: {len(read.programs)} programs",
        notes=read.warnings,
        fix="check supervisord's [include] files= (a pattern that matches nothing is skipped)",
    )
    host = _host_facts(read.programs, boot_env, config, {}, cwd)
    values, origins, section = sidecar_environment(boot_env, read)
    ctx = Context(values, origins, read.text, section, host.pop("debian_chromium", False))
    facts, _ = _facts_of(
        env,
        sidecar_env=values,
        ctx=ctx,
        supervisord_config=read.supervisord,
        programs=read.programs,
        boot_env=boot_env,
        boot_env_origin=origin,
    )
    return facts(source, **host)


def _live_program(raw: Mapping[str, Any]) -> ProgramConfig:
    return ProgramConfig(
        name=str(raw["name"]),
        group=str(raw["group"]),
        command=str(raw["command"]),
        autostart=bool(raw["autostart"]),
        stopsignal=signal_name(int(raw["stopsignal"])),
        killasgroup=bool(raw["killasgroup"]),
        # getAllConfigInfo says "none" for what is not set.
        directory=None if raw.get("directory") in (None, "none") else raw.get("directory"),
    )


def _supervisord_process(pid: int) -> tuple[dict[str, str] | None, list[str], str]:
    """supervisord's environment, argv and working directory, if this is it."""
    try:
        process = psutil.Process(pid)
        cmdline = process.cmdline()
        if not any("supervisord" in word for word in cmdline[:3]):
            return None, [], ""  # a pid from another namespace (supervisord over http)
        return dict(process.environ()), cmdline, process.cwd()
    except psutil.Error:
        return None, [], ""


def config_file_of(cmdline: Sequence[str], cwd: str) -> str | None:
    """The -c/--configuration argument of supervisord's command line."""
    value = flag_value([cmdline], "-c", "--configuration")
    if value is None:
        value = next((w[2:] for w in cmdline if w.startswith("-c") and len(w) > 2), None)
    if value is None:
        return None
    return value if value.startswith("/") else os.path.join(cwd, value)


def _process_tree(pid: int) -> tuple[frozenset[int], tuple[tuple[str, ...], ...]]:
    pids: set[int] = set()
    argvs: list[tuple[str, ...]] = []
    for process in memory.process_tree(pid):
        with contextlib.suppress(psutil.Error):
            argvs.append(tuple(process.cmdline()))
            pids.add(process.pid)
    return frozenset(pids), tuple(argvs)


def _x_lock(settings: Settings) -> XLock:
    path = xlock.lock_path(settings)
    pid = xlock.read_lock_pid(path)
    if not pid:
        return XLock(path, pid)
    try:
        process = psutil.Process(pid)
        cmdline = " ".join(process.cmdline())[:120] or process.name()
    except psutil.Error:
        return XLock(path, pid)
    return XLock(path, pid, True, xlock.holder_is_x_server(pid), cmdline)


def _pidfd_error() -> str | None:
    try:
        fd = os.pidfd_open(os.getpid())
    except (OSError, AttributeError) as exc:
        return f"{exc.__class__.__name__}: {exc}"
    os.close(fd)
    return None


def _live_rest(
    env: Mapping[str, str],
    given: Settings | None,
    url: str,
    info: Mapping[str, Any],
    running_pids: Mapping[Program, int],
) -> dict[str, Any]:
    """The blocking part of a live gathering: /proc, files, ports, the X lock."""
    pid = int(info["pid"])
    programs = {str(p["name"]): _live_program(p) for p in info["programs"]}
    supervisord_env, cmdline, cwd = _supervisord_process(pid)
    notes: list[str] = []
    if supervisord_env is None:
        notes.append(f"supervisord's environment (pid {pid}) is not readable here")
        try:
            boot_env = boot.boot_environment(env)
        except ConfigError:
            boot_env = dict(env)
        origin = "this environment as browser-stack-entrypoint would pass it on"
    else:
        boot_env = supervisord_env
        origin = f"supervisord's environment, pid {pid}"
    config_path = config_file_of(cmdline, cwd) if cmdline else None
    files = ""
    extra: dict[str, Any] = {}
    context: tuple[dict[str, str], str, str] = ({}, "", f"program:{SIDECAR_PROGRAM}")
    if config_path is None:
        notes.append("its config file is not known, so stopasgroup and environment= are not")
    else:
        try:
            read = read_config(config_path, boot_env, boot.created_directories(boot_env))
        except UnreadableConfig as exc:
            notes.append(
                f"its files cannot be read ({exc.message}): stopasgroup and environment= "
                "are not visible"
            )
        else:
            files = f", files {config_path}"
            programs = {
                name: _with_file_settings(config, read.programs.get(name))
                for name, config in programs.items()
            }
            extra["supervisord_config"] = read.supervisord
            values, origins, section = sidecar_environment(boot_env, read)
            extra["sidecar_env"] = values
            context = (origins, read.text, section)
    running = {p: _process_tree(p_pid) for p, p_pid in running_pids.items() if p_pid > 0}
    running_argvs = {str(p): argvs for p, (_pids, argvs) in running.items()}
    facts = _host_facts(programs, boot_env, config_path, running_argvs, cwd or "/")
    sidecar_env = extra.get("sidecar_env", {})
    origins, text, section = context
    extra["ctx"] = Context(sidecar_env, origins, text, section, facts.pop("debian_chromium", False))
    settings = given
    if settings is None and sidecar_env:
        settings = _settings(sidecar_env, None)[0]
    facts.update(extra)
    source = Source(
        "live",
        url,
        detail=f"{url} answers: pid {pid}, {len(programs)} programs{files}",
        notes=tuple(notes),
        fix="run `browser-stack doctor --static --config FILE` where supervisord's files "
        "and environment are readable (as root, in its container)",
    )
    facts.update(
        source=source,
        programs=programs,
        boot_env=boot_env,
        boot_env_origin=origin,
        pids={str(p): pids for p, (pids, _argvs) in running.items()},
        running_argvs=running_argvs,
    )
    if settings is not None:
        facts["holders"] = {
            kind: find_holder(port) for kind, port in settings.program_ports.items()
        }
        facts["x_lock"] = _x_lock(settings)
    return facts


def _with_file_settings(live: ProgramConfig, read: ProgramConfig | None) -> ProgramConfig:
    """What supervisord loaded, with what only the files say (stopasgroup, the
    environment, the section, autorestart, serverurl) when the files still match it."""
    if read is None or read.command != live.command:
        return live
    return dataclasses.replace(
        live,
        stopasgroup=read.stopasgroup,
        environment=read.environment,
        section=read.section,
        own_environment=read.own_environment,
        autorestart=read.autorestart,
        serverurl=read.serverurl,
    )


async def gather_live(env: Mapping[str, str], given: Settings | None = None) -> DoctorFacts:
    """Facts from the running supervisord and this machine. `given`: the running
    sidecar's own settings (else those of the environment supervisord gives it,
    when its files are readable, else this environment's)."""
    # pidfd is this machine's, whatever supervisord answers.
    pidfd_error = _pidfd_error()
    facts, settings = _facts_of(env, given, pidfd_error=pidfd_error)
    if settings is not None:
        url, user, password = (
            settings.supervisor_url,
            settings.supervisor_username,
            settings.supervisor_password,
        )
    else:
        url = env.get("SUPERVISOR_SERVER_URL", "").strip() or DEFAULT_SUPERVISOR_URL
        user = env.get("SUPERVISOR_USERNAME") or None
        password = env.get("SUPERVISOR_PASSWORD") or None
    supervisor = XmlRpcSupervisor(url, user, password)
    try:
        info = await supervisor.config_info()
        running = await supervisor.process_info()
    except SupervisorUnavailable as exc:
        source = Source(
            "live",
            url,
            error=exc.message,
            fix="start supervisord, or set SUPERVISOR_SERVER_URL to the socket it serves",
        )
        return facts(source)
    except BrowserStackError as exc:
        source = Source(
            "live",
            url,
            error=exc.message,
            fix="set SUPERVISOR_USERNAME and SUPERVISOR_PASSWORD to the username and password "
            "of supervisord's [unix_http_server] (or [inet_http_server])",
        )
        return facts(source)
    finally:
        await supervisor.close()
    pids = {program: info.pid for program, info in running.items()}
    rest = await asyncio.to_thread(_live_rest, env, given, url, info, pids)
    sidecar_env = rest.pop("sidecar_env", None)
    if given is None and sidecar_env:
        facts, _ = _facts_of(env, None, sidecar_env, pidfd_error=pidfd_error)
    return facts(**rest)


# --- the report ------------------------------------------------------------------


@dataclass(frozen=True)
class Report:
    mode: str
    source: str
    checks: tuple[Check, ...]

    @property
    def failed(self) -> bool:
        return any(c.verdict == Verdict.FAIL for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {str(v): sum(c.verdict == v for c in self.checks) for v in Verdict}

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": not self.failed,
            "mode": self.mode,
            "source": self.source,
            "counts": self.counts(),
            "checks": [c.to_dict() for c in self.checks],
        }

    def table(self) -> str:
        width = max(len(c.name) for c in self.checks)
        lines = [f"{'CHECK':<{width}}  VERDICT  SAW"]
        for c in self.checks:
            lines.append(f"{c.name:<{width}}  {c.verdict:<7}  {c.saw}")
            if c.fix:
                lines.append(f"{'':<{width}}           fix: {c.fix}")
        counts = ", ".join(f"{n} {v}" for v, n in self.counts().items())
        lines.append(f"{len(self.checks)} checks ({self.mode}, {self.source}): {counts}")
        return "\n".join(lines) + "\n"


def report(facts: DoctorFacts) -> Report:
    return Report(facts.source.mode, facts.source.where, tuple(run_checks(facts)))


async def live_report(env: Mapping[str, str], settings: Settings | None = None) -> Report:
    return report(await gather_live(env, settings))


def static_report(config: str, env: Mapping[str, str], cwd: str | None = None) -> Report:
    return report(gather_static(config, env, cwd))


# --- the command ---------------------------------------------------------------------


def command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """`browser-stack doctor`: 0 when nothing fails, 1 when something does."""
    if args.static != (args.config is not None):
        print("browser-stack: doctor: --static and --config go together", file=sys.stderr)
        return EXIT_USAGE
    if args.static and not os.path.isfile(args.config):
        # What supervisord -c refuses too: a bad argument, not a finding.
        why = "is not a file" if os.path.exists(args.config) else "does not exist"
        print(f"browser-stack: doctor: --config {args.config!r} {why}", file=sys.stderr)
        return EXIT_USAGE
    result = static_report(args.config, env) if args.static else asyncio.run(live_report(env))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table(), end="")
    return EXIT_FAILED if result.failed else EXIT_OK
