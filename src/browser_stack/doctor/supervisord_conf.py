"""supervisord's configuration files, read the way supervisord reads them.

With supervisor's own parser (`supervisor.options.ServerOptions`): includes,
`%(ENV_X)s` and `%(here)s` expansion, supervisord's defaults, the
`[supervisord] environment=` merged into each program's. Nothing is started and
no supervisord is needed, so a Dockerfile can check its image's files at build
time. Imported only by the doctor: the sidecar itself never loads supervisor.

Beyond what supervisor's parser keeps, this reads what supervisord decides
later (the user it runs as, the URL it gives its programs) and what the doctor
needs to name a fix: each program's section and its own environment=, the
servers and rpcinterfaces, and the files as written.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import threading
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

_MISSING_NAME = re.compile(r"contains names \('(?:ENV_)?([^']*)'\) which cannot be expanded")
_FORMAT_STRING = re.compile(r"^Format string .*? for '([^']*)' contains names")
# supervisor's parser checks directories through module-level functions; reading
# with directories that will exist by boot replaces them for one read at a time.
_PARSE_LOCK = threading.Lock()


@dataclass(frozen=True)
class ProgramConfig:
    """One program's configuration, from the files or from getAllConfigInfo."""

    name: str
    group: str
    command: str
    autostart: bool
    stopsignal: str  # "INT", "TERM", ...
    killasgroup: bool
    # None: not known (getAllConfigInfo carries neither).
    stopasgroup: bool | None = None
    environment: Mapping[str, str] | None = None  # its own, with [supervisord]'s merged in
    directory: str | None = None
    # Known from the files only.
    section: str = ""  # "program:browser" (empty: not known)
    own_environment: Mapping[str, str] | None = None  # its environment= alone
    autorestart: str | None = None  # "true", "false" or "unexpected"
    serverurl: str | None = None  # its serverurl= (None: AUTO, supervisord's own)

    @property
    def argv(self) -> list[str]:
        """The command split as supervisord splits it before it execs."""
        try:
            return shlex.split(self.command)
        except ValueError:
            return self.command.split()

    @property
    def argv_error(self) -> str:
        """Why supervisord cannot split the command ("" when it can)."""
        try:
            shlex.split(self.command)
        except ValueError as exc:
            return str(exc)
        return ""


@dataclass(frozen=True)
class Server:
    """An [inet_http_server] or [unix_http_server]: where supervisord answers XML-RPC."""

    section: str
    family: str  # "unix" or "inet"
    file: str = ""
    host: str = ""
    port: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        if self.family == "unix":
            return f"unix://{self.file}"
        return f"http://{self.host or 'localhost'}:{self.port}"


@dataclass(frozen=True)
class SupervisordConfig:
    environment: Mapping[str, str] = field(default_factory=dict)
    servers: tuple[Server, ...] = ()
    # (namespace, factory as module:name) of each [rpcinterface:x]
    rpcinterfaces: tuple[tuple[str, str], ...] = ()
    user: str | None = None

    @property
    def serverurl(self) -> str | None:
        """The URL supervisord gives its programs as SUPERVISOR_SERVER_URL: its
        first unix socket, else its first inet server (supervisor's realize())."""
        for family in ("unix", "inet"):
            for server in self.servers:
                if server.family == family:
                    return server.url
        return None


@dataclass(frozen=True)
class ConfigRead:
    programs: dict[str, ProgramConfig]
    included: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())
    supervisord: SupervisordConfig = field(default_factory=SupervisordConfig)
    text: str = ""  # the files as written, main file first


class UnreadableConfig(Exception):
    """supervisord would refuse these files (and say the same at boot)."""

    def __init__(
        self,
        message: str,
        missing_variable: str | None = None,
        option: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.missing_variable = missing_variable
        self.option = option  # (section, option) that supervisord refuses, when one is


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def _restart_word(value: Any) -> str:
    from supervisor.datatypes import RestartUnconditionally  # type: ignore[import-untyped]

    if value is False:
        return "false"
    return "true" if value is RestartUnconditionally else "unexpected"


def _factory_name(factory: Any) -> str:
    return f"{getattr(factory, '__module__', '?')}:{getattr(factory, '__qualname__', '?')}"


def _reader() -> Any:
    """supervisor's ServerOptions, keeping what it reads and then forgets: each
    process's section and own environment=."""
    from supervisor.options import ServerOptions  # type: ignore[import-untyped]

    class Reader(ServerOptions):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.own: dict[tuple[str, str], tuple[str, dict[str, str]]] = {}

        def processes_from_section(
            self, parser: Any, section: str, group_name: str, klass: Any = None
        ) -> Any:
            configs = super().processes_from_section(parser, section, group_name, klass)
            for config in configs:
                self.own[(group_name, config.name)] = (section, dict(config.environment or {}))
            return configs

    return Reader()


def _with_parents(created: Collection[str]) -> set[str]:
    made = {os.path.normpath(d) for d in created}
    for d in list(made):
        while d != os.path.dirname(d):
            d = os.path.dirname(d)
            made.add(d)
    return made


@contextlib.contextmanager
def _existing(created: Collection[str]) -> Iterator[None]:
    """supervisor's directory checks, with `created` (and their parents) counted
    as existing: the entrypoint makes them before supervisord starts."""
    if not created:
        yield
        return
    import supervisor.datatypes as datatypes  # type: ignore[import-untyped]
    import supervisor.options as options

    made = _with_parents(created)
    original_dirpath, original_directory = datatypes.existing_dirpath, datatypes.existing_directory

    def existing_dirpath(value: str) -> str:
        path = os.path.expanduser(value)
        if os.path.normpath(os.path.dirname(path)) in made:
            return path
        return str(original_dirpath(value))

    def existing_directory(value: str) -> str:
        path = os.path.expanduser(value)
        return path if os.path.normpath(path) in made else str(original_directory(value))

    with _PARSE_LOCK:
        datatypes.existing_dirpath = options.existing_dirpath = existing_dirpath
        options.existing_directory = existing_directory
        try:
            yield
        finally:
            datatypes.existing_dirpath = options.existing_dirpath = original_dirpath
            options.existing_directory = original_directory


def read_config(path: str, env: Mapping[str, str], created: Collection[str] = ()) -> ConfigRead:
    """Read `path` and what it includes, expanding %(ENV_X)s from `env` (not from
    this process's environment), with the directories in `created` taken as made
    by boot. Raises UnreadableConfig with supervisord's reason, in one line."""
    from supervisor.datatypes import name_to_uid

    options = _reader()
    options.environ_expansions = {f"ENV_{name}": value for name, value in env.items()}
    options.configfile = path
    try:
        with _existing(created):
            options.process_config(do_usage=False)
    except ValueError as exc:
        raise _unreadable(path, str(exc)) from None
    root = options.configroot.supervisord
    if root.user is not None:
        # supervisord checks it only as it starts (realize()), and exits.
        try:
            name_to_uid(root.user)
        except ValueError as exc:
            raise UnreadableConfig(
                f"{path}: [supervisord] user={root.user}: {exc}, so supervisord exits",
                option=("supervisord", "user"),
            ) from None
    programs = {}
    for group in options.process_group_configs:
        for process in group.process_configs:
            section, own = options.own.get((group.name, process.name), ("", None))
            programs[process.name] = ProgramConfig(
                name=process.name,
                group=group.name,
                command=process.command,
                autostart=bool(process.autostart),
                stopsignal=signal_name(int(process.stopsignal)),
                killasgroup=bool(process.killasgroup),
                stopasgroup=bool(process.stopasgroup),
                environment=dict(process.environment or {}),
                directory=process.directory,
                section=section,
                own_environment=own,
                autorestart=_restart_word(process.autorestart),
                serverurl=process.serverurl,
            )
    included = tuple(
        info.split('"')[1] for info in options.parse_infos if info.startswith("Included extra")
    )
    servers = tuple(
        Server(
            section=config["section"],
            family="unix" if config["family"] == socket.AF_UNIX else "inet",
            file=config.get("file", ""),
            host=config.get("host", ""),
            port=int(config.get("port") or 0),
            username=config.get("username"),
            password=config.get("password"),
        )
        for config in root.server_configs
    )
    made = _with_parents(created)
    for server in servers:
        folder = os.path.dirname(server.file)
        if server.family == "unix" and not os.path.isdir(folder) and folder not in made:
            raise UnreadableConfig(
                f"{path}: [{server.section}] file={server.file}: {folder} does not exist, so "
                "supervisord cannot open its socket and exits"
            )
    supervisord = SupervisordConfig(
        environment=dict(root.environment or {}),
        servers=servers,
        rpcinterfaces=tuple(
            (name, _factory_name(factory)) for name, factory, _extras in root.rpcinterface_factories
        ),
        user=root.user,
    )
    text = []
    for name in (path, *included):
        with contextlib.suppress(OSError), open(name, encoding="utf-8", errors="replace") as f:
            text.append(f.read())
    return ConfigRead(
        programs, included, tuple(options.parse_warnings), supervisord, "\n".join(text)
    )


def _unreadable(path: str, reason: str) -> UnreadableConfig:
    # supervisord's message for an unset variable lists every name it knows.
    missing = _MISSING_NAME.search(reason)
    if missing is None:
        line = " ".join(reason.split())  # a parse error comes as lines with tabs
        return UnreadableConfig(line if path in line else f"{path}: {line}")
    where = _FORMAT_STRING.search(reason)
    option = f" in {where[1]}" if where else ""
    name = missing[1]
    return UnreadableConfig(f"{path}: %(ENV_{name})s{option}: {name} is not set", name)
