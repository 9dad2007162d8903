"""browser-stack doctor: each assumption the sidecar makes about its host, as a
named check with a verdict (ok / warn / fail), what it saw, and a fix in one line.

Live (the default) asks the running supervisord (getPID, getAllConfigInfo,
getAllProcessInfo), reads supervisord's own environment and files through
/proc/PID, and looks at this machine. Static (`--static --config PATH`) reads
supervisord's files with supervisor's parser in the environment the entrypoint
boots them with, with no supervisord running, so an image build can run it.

Facts are gathered first (`gather_live`, `gather_static`); every check is a
pure function of plain data, and `run_checks` runs them in a fixed order. The
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
from typing import Any

import psutil

from browser_stack import boot, memory, xlock
from browser_stack.config import DEFAULT_SUPERVISOR_URL, Settings
from browser_stack.doctor_checks import (
    Check,
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
    check_supervisord,
    check_tigervnc_command,
    check_wait_ports,
    check_websocat_command,
    check_x_clients_display,
    check_x_lock,
    flag_value,
    is_sidecar,
    not_checked,
    runs_chromium_itself,
)
from browser_stack.errors import BrowserStackError, ConfigError, SupervisorUnavailable
from browser_stack.ports import PortHolder, find_holder
from browser_stack.stack import PROGRAMS, Program
from browser_stack.supervisor import XmlRpcSupervisor
from browser_stack.supervisord_conf import (
    ProgramConfig,
    UnreadableConfig,
    read_config,
    signal_name,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
# Where the Dockerfile puts the gateway route, relative to supervisord's config.
NGINX_ROUTE = Path("nginx") / "browser-stack.conf"


@dataclass(frozen=True)
class Facts:
    source: Source
    env: Mapping[str, str]
    settings: Settings | None = None
    settings_error: str = ""
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

    @property
    def live(self) -> bool:
        return self.source.mode == "live"


CommandCheck = Callable[[Sequence[Sequence[str]], Settings], Check]


def run_checks(facts: Facts) -> list[Check]:
    """Every check, in a fixed order; live-only ones only in live mode. A check
    whose input is missing (supervisord down, a program not configured, invalid
    settings) is a warning that says so: the failing check is the cause."""
    programs = facts.programs
    settings = facts.settings
    no_config = "supervisord's configuration is not known"
    no_settings = "the sidecar's settings are invalid"
    no_processes = "supervisord's processes are not known"
    out = [check_settings(settings, facts.settings_error), check_supervisord(facts.source)]

    def for_program(name: str, program: Program, check: Callable[[ProgramConfig], Check]) -> Check:
        if programs is None:
            return not_checked(name, no_config)
        config = programs.get(program)
        return check(config) if config is not None else not_checked(name, f"no [program:{program}]")

    def argvs(program: Program) -> list[Sequence[str]]:
        """The configured command, then (live) what its processes run."""
        config = (programs or {}).get(program)
        configured: list[Sequence[str]] = [config.argv] if config is not None else []
        return configured + list(facts.running_argvs.get(program, ()))

    def command(name: str, program: Program, check: CommandCheck) -> Check:
        if settings is None:
            return not_checked(name, no_settings)
        return for_program(name, program, lambda _config: check(argvs(program), settings))

    if programs is None:
        out += [not_checked(n, no_config) for n in ("programs", "sidecar-program", "autostart")]
    else:
        out.append(check_programs(programs))
        out.append(check_sidecar_program(programs))
        if facts.lazy is None:
            out.append(not_checked("autostart", facts.switch_error))
        else:
            out.append(check_autostart(programs, facts.lazy, boot.describe_switch(facts.env)))

    running = facts.running_argvs.get(Program.BROWSER, ())
    main_argv = running[0] if running else None
    idle = settings.idle_timeout_s if settings is not None else 0.0

    def stop(config: ProgramConfig) -> Check:
        return check_browser_stop(config, runs_chromium_itself(config.argv, main_argv))

    def stop_signal(config: ProgramConfig) -> Check:
        direct = runs_chromium_itself(config.argv, main_argv)
        return check_browser_stop_signal(config, direct, idle)

    out.append(for_program("browser-stop", Program.BROWSER, stop))
    out.append(for_program("browser-stop-signal", Program.BROWSER, stop_signal))
    out.append(
        for_program(
            "browser-profile",
            Program.BROWSER,
            lambda _config: check_browser_profile(argvs(Program.BROWSER), facts.profile),
        )
    )
    out.append(command("tigervnc-command", Program.TIGERVNC, check_tigervnc_command))
    out.append(command("browser-command", Program.BROWSER, check_browser_command))
    out.append(command("mcp-command", Program.MCP_SERVER_BROWSER, check_mcp_command))
    out.append(command("websocat-command", Program.WEBSOCAT, check_websocat_command))
    if programs is None or settings is None:
        why = no_config if programs is None else no_settings
        out.append(not_checked("x-clients-display", why))
    else:
        out.append(check_x_clients_display(programs, facts.boot_env, settings))
    if programs is None:
        out.append(not_checked("executables", no_config))
    else:
        out.append(check_executables(facts.executables))
    if settings is None or facts.lazy is None:
        why = no_settings if settings is None else facts.switch_error
        out.append(not_checked("wait-ports", why))
    else:
        wait_ports = facts.boot_env.get("WAIT_PORTS")
        origin = facts.boot_env_origin
        out.append(check_wait_ports(wait_ports, facts.lazy, settings.program_ports, origin))
    if facts.live:
        if settings is None:
            out += [not_checked(n, no_settings) for n in ("stack-ports", "x-lock")]
        elif facts.holders is None or facts.x_lock is None:
            # Whose a port or the X lock is cannot be told without the programs' pids.
            out += [not_checked(n, no_processes) for n in ("stack-ports", "x-lock")]
        else:
            out.append(check_stack_ports(facts.holders, facts.pids, settings))
            tigervnc = facts.pids.get(Program.TIGERVNC, frozenset())
            out.append(check_x_lock(facts.x_lock, settings.display, tigervnc))
        out.append(check_pidfd(facts.pidfd_error))
    out.append(check_exposure(facts.env, facts.nginx_route))
    out.append(check_cgroup(facts.cgroup))
    return out


# --- gathering the facts -----------------------------------------------------------


def _settings(env: Mapping[str, str], given: Settings | None) -> tuple[Settings | None, str]:
    if given is not None:
        return given, ""
    try:
        return Settings.from_env(env), ""
    except ConfigError as exc:
        return None, exc.message


def _switch(env: Mapping[str, str]) -> tuple[bool | None, str]:
    try:
        return boot.is_lazy(env), ""
    except ConfigError as exc:
        return None, f"the switch is invalid: {exc.message}"


def _facts_of(
    env: Mapping[str, str], given: Settings | None = None, **known: Any
) -> tuple[Callable[..., Facts], Settings | None]:
    """Facts(source, ...) with what every gathering knows first (the
    environment, the sidecar's settings and the switch, each with why not),
    and the settings."""
    settings, settings_error = _settings(env, given)
    lazy, switch_error = _switch(env)
    facts = functools.partial(
        Facts,
        env=env,
        settings=settings,
        settings_error=settings_error,
        lazy=lazy,
        switch_error=switch_error,
        **known,
    )
    return facts, settings


def resolve_executable(argv0: str, path: Sequence[str], cwd: str) -> tuple[str | None, str]:
    """The file supervisord would exec for argv0, and why it cannot ("" if it can):
    a name with a slash as is, else the first PATH entry where it exists."""
    if "/" in argv0:
        candidates = [argv0 if argv0.startswith("/") else os.path.join(cwd, argv0)]
    else:
        candidates = [os.path.join(d, argv0) for d in path]
    for candidate in candidates:
        try:
            st = os.stat(candidate)
        except OSError:
            continue
        if stat.S_ISDIR(st.st_mode):
            return candidate, "is a directory"
        if not st.st_mode & 0o111 or not os.access(candidate, os.X_OK):
            return candidate, "is not executable"
        return candidate, ""
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
        argv = config.argv
        if not argv:
            out[name] = Executable(name, "", None, "has an empty command")
            continue
        own_path = (config.environment or {}).get("PATH")
        path = own_path.split(os.pathsep) if own_path else default_path
        found, problem = resolve_executable(argv[0], path, config.directory or cwd)
        out[name] = Executable(name, argv[0], found, problem, tuple(path))
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


def _profile_facts(argvs: Sequence[Sequence[str]]) -> PathFacts | None:
    value = flag_value(argvs, "--user-data-dir")
    if value is None or not value.startswith("/"):
        return None
    return _path_facts(value)


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
        facts["executables"] = _executables(programs, boot_env, cwd)
        browser = programs.get(Program.BROWSER)
        if browser is not None:
            argvs = [browser.argv, *running_argvs.get(Program.BROWSER, ())]
            facts["profile"] = _profile_facts(argvs)
    return facts


def gather_static(config: str, env: Mapping[str, str]) -> Facts:
    """Facts from supervisord's files alone, in the environment the entrypoint
    (and the AIO image's run.sh) would boot them with."""
    facts, _ = _facts_of(env)
    try:
        boot_env = boot.boot_environment(env)
    except ConfigError as exc:
        source = Source(
            "static",
            config,
            error=f"browser-stack-entrypoint would refuse this environment: {exc.message}",
            fix="fix the variable named",
        )
        return facts(source)
    origin = "as browser-stack-entrypoint would pass it on"
    try:
        read = read_config(config, boot_env)
    except UnreadableConfig as exc:
        fix = "supervisord refuses these files as they are: fix the line named"
        if exc.missing_variable:
            fix = (
                f"set {exc.missing_variable} where supervisord starts (the image's ENV or its "
                "entrypoint), or stop the file from reading it"
            )
        source = Source("static", config, error=exc.message, fix=fix)
        return facts(source, boot_env=boot_env, boot_env_origin=origin)
    files = f" and {len(read.included)} included file(s)" if read.included else ""
    source = Source(
        "static",
        config,
        detail=f"read {config}{files}: {len(read.programs)} programs",
        notes=read.warnings,
        fix="check supervisord's [include] files= (a pattern that matches nothing is skipped)",
    )
    host = _host_facts(read.programs, boot_env, config, {}, os.path.dirname(config))
    return facts(
        source,
        programs=read.programs,
        boot_env=boot_env,
        boot_env_origin=origin,
        **host,
    )


def _live_program(raw: Mapping[str, Any]) -> ProgramConfig:
    return ProgramConfig(
        name=str(raw["name"]),
        group=str(raw["group"]),
        command=str(raw["command"]),
        autostart=bool(raw["autostart"]),
        stopsignal=signal_name(int(raw["stopsignal"])),
        killasgroup=bool(raw["killasgroup"]),
        directory=raw.get("directory"),
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
    settings: Settings | None,
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
    if config_path is None:
        notes.append("its config file is not known, so stopasgroup and environment= are not")
    else:
        try:
            read = read_config(config_path, boot_env)
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
    running = {p: _process_tree(p_pid) for p, p_pid in running_pids.items() if p_pid > 0}
    running_argvs = {str(p): argvs for p, (_pids, argvs) in running.items()}
    facts = _host_facts(programs, boot_env, config_path, running_argvs, cwd or "/")
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
    environment) when the files still match it."""
    if read is None or read.command != live.command:
        return live
    return dataclasses.replace(live, stopasgroup=read.stopasgroup, environment=read.environment)


async def gather_live(env: Mapping[str, str], settings: Settings | None = None) -> Facts:
    """Facts from the running supervisord and this machine. `settings`: the
    running sidecar's own (else built from env)."""
    # pidfd is this machine's, whatever supervisord answers.
    facts, settings = _facts_of(env, settings, pidfd_error=_pidfd_error())
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
    rest = await asyncio.to_thread(_live_rest, env, settings, url, info, pids)
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


def report(facts: Facts) -> Report:
    return Report(facts.source.mode, facts.source.where, tuple(run_checks(facts)))


async def live_report(env: Mapping[str, str], settings: Settings | None = None) -> Report:
    return report(await gather_live(env, settings))


def static_report(config: str, env: Mapping[str, str]) -> Report:
    return report(gather_static(config, env))


# --- the command ---------------------------------------------------------------------


def command(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """`browser-stack doctor`: 0 when nothing fails, 1 when something does."""
    if args.static != (args.config is not None):
        print("browser-stack: doctor: --static and --config go together", file=sys.stderr)
        return EXIT_USAGE
    result = static_report(args.config, env) if args.static else asyncio.run(live_report(env))
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
    else:
        print(result.table(), end="")
    return EXIT_FAILED if result.failed else EXIT_OK
