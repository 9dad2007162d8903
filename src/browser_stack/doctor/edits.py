"""What a fix of the doctor changes, as data: one edit to supervisord's files or
to the environment the container starts with.

A check's fix line is the text of its edits, so the line and what a tool (or a
test) applies cannot disagree: applied, the edits make that check pass. Each
edit renders as one sentence and as JSON (`browser-stack doctor --json`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# SetEnv.where for the environment the container starts with (docker run -e, the
# image's ENV): what browser-stack-entrypoint, then supervisord, then every
# program inherits. Anything else is a section whose environment= it edits.
CONTAINER = "environment"


def quoted(words: Sequence[str]) -> str:
    return shlex.join(words)


@dataclass(frozen=True)
class SetEnv:
    """Set (value None: remove) a variable in the container's environment or in
    a section's environment= ("supervisord", "program:browser-stack")."""

    name: str
    value: str | None
    where: str = CONTAINER

    def text(self) -> str:
        if self.where == CONTAINER:
            if self.value is None:
                return f"unset {self.name} in the container's environment"
            return f"set {self.name}={self.value} in the container's environment"
        if self.value is None:
            return f"remove {self.name} from [{self.where}] environment="
        return f'set {self.name}="{self.value}" in [{self.where}] environment='

    def to_dict(self) -> dict[str, Any]:
        return {"edit": "set-env", "name": self.name, "value": self.value, "where": self.where}


@dataclass(frozen=True)
class SetOption:
    """Set (value None: remove) `option=value` in [section]; a section that is
    not there is added."""

    section: str
    option: str
    value: str | None

    def text(self) -> str:
        if self.value is None:
            return f"remove {self.option}= from [{self.section}]"
        return f"set {self.option}={self.value} in [{self.section}]"

    def to_dict(self) -> dict[str, Any]:
        return {
            "edit": "set-option",
            "section": self.section,
            "option": self.option,
            "value": self.value,
        }


@dataclass(frozen=True)
class RenameSection:
    section: str
    to: str

    def text(self) -> str:
        return f"rename [{self.section}] to [{self.to}]"

    def to_dict(self) -> dict[str, Any]:
        return {"edit": "rename-section", "section": self.section, "to": self.to}


@dataclass(frozen=True)
class AppendArgs:
    """Append words to the command= of [section]: for a program that takes the
    last of a repeated flag (Chromium, Xvnc), whatever came before."""

    section: str
    args: tuple[str, ...]

    def text(self) -> str:
        return f"append `{quoted(self.args)}` to command= in [{self.section}] (the last one counts)"

    def to_dict(self) -> dict[str, Any]:
        return {"edit": "append-args", "section": self.section, "args": list(self.args)}


@dataclass(frozen=True)
class ReplaceArgs:
    """Replace words of the command= of [section], as written there."""

    section: str
    old: tuple[str, ...]
    new: tuple[str, ...]

    def text(self) -> str:
        if not self.new:
            return f"remove `{quoted(self.old)}` from command= in [{self.section}]"
        return (
            f"replace `{quoted(self.old)}` with `{quoted(self.new)}` in [{self.section}] command="
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "edit": "replace-args",
            "section": self.section,
            "old": list(self.old),
            "new": list(self.new),
        }


@dataclass(frozen=True)
class RemoveSection:
    section: str

    def text(self) -> str:
        return f"remove [{self.section}]"

    def to_dict(self) -> dict[str, Any]:
        return {"edit": "remove-section", "section": self.section}


Edit = SetEnv | SetOption | RenameSection | AppendArgs | ReplaceArgs | RemoveSection


def describe(edits: Sequence[Edit]) -> str:
    """The edits as one line, in order: each applies after the one before."""
    return "; ".join(edit.text() for edit in edits)
