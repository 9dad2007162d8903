"""supervisord's configuration files, read the way supervisord reads them.

With supervisor's own parser (`supervisor.options.ServerOptions`): includes,
`%(ENV_X)s` and `%(here)s` expansion, supervisord's defaults, the
`[supervisord] environment=` merged into each program's. Nothing is started and
no supervisord is needed, so a Dockerfile can check its image's files at build
time. Imported only by the doctor: the sidecar itself never loads supervisor.
"""

from __future__ import annotations

import re
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field

_MISSING_NAME = re.compile(r"contains names \('(?:ENV_)?([^']*)'\) which cannot be expanded")
_FORMAT_STRING = re.compile(r"^Format string .*? for '([^']*)' contains names")


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
    environment: Mapping[str, str] | None = None
    directory: str | None = None

    @property
    def argv(self) -> list[str]:
        """The command split as supervisord splits it before it execs."""
        try:
            return shlex.split(self.command)
        except ValueError:
            return self.command.split()


@dataclass(frozen=True)
class ConfigRead:
    programs: dict[str, ProgramConfig]
    included: tuple[str, ...] = ()
    warnings: tuple[str, ...] = field(default=())


class UnreadableConfig(Exception):
    """supervisord would refuse these files (and say the same at boot)."""

    def __init__(self, message: str, missing_variable: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.missing_variable = missing_variable


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name.removeprefix("SIG")
    except ValueError:
        return str(number)


def read_config(path: str, env: Mapping[str, str]) -> ConfigRead:
    """Read `path` and what it includes, expanding %(ENV_X)s from `env` (not from
    this process's environment). Raises UnreadableConfig with supervisord's reason."""
    from supervisor.options import ServerOptions  # type: ignore[import-untyped]

    options = ServerOptions()
    options.environ_expansions = {f"ENV_{name}": value for name, value in env.items()}
    options.configfile = path
    try:
        options.process_config(do_usage=False)
    except ValueError as exc:
        raise _unreadable(path, str(exc)) from None
    programs = {}
    for group in options.process_group_configs:
        for process in group.process_configs:
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
            )
    included = tuple(
        info.split('"')[1] for info in options.parse_infos if info.startswith("Included extra")
    )
    return ConfigRead(programs, included, tuple(options.parse_warnings))


def _unreadable(path: str, reason: str) -> UnreadableConfig:
    # supervisord's message for an unset variable lists every name it knows.
    missing = _MISSING_NAME.search(reason)
    if missing is None:
        return UnreadableConfig(reason if path in reason else f"{path}: {reason}")
    where = _FORMAT_STRING.search(reason)
    option = f" in {where[1]}" if where else ""
    name = missing[1]
    return UnreadableConfig(f"{path}: %(ENV_{name})s{option}: {name} is not set", name)
