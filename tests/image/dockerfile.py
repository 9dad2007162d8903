"""The Dockerfile read as its instructions: stages, COPY sources, the final stage's
ENV and exec forms (what tests/image checks against the image's layout)."""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

DOCKERFILE = Path(__file__).resolve().parents[2] / "Dockerfile"


@dataclass(frozen=True)
class Instruction:
    stage: int  # -1 before the first FROM
    keyword: str
    args: str
    line: int


@dataclass
class Dockerfile:
    instructions: list[Instruction] = field(default_factory=list)

    @classmethod
    def parse(cls, path: Path = DOCKERFILE) -> Dockerfile:
        out = cls()
        stage, pending, start = -1, "", 0
        for number, raw in enumerate(path.read_text().splitlines(), 1):
            if re.match(r"^\s*#", raw) or (not raw.strip() and not pending):
                continue  # comments (also inside a continuation) and blank lines
            if not pending:
                start = number
            if raw.rstrip().endswith("\\"):
                pending += raw.rstrip()[:-1] + " "
                continue
            text = (pending + raw).strip()
            pending = ""
            keyword, _, args = text.partition(" ")
            keyword = keyword.upper()
            if keyword == "FROM":
                stage += 1
            out.instructions.append(Instruction(stage, keyword, args.strip(), start))
        assert not pending, "a continuation runs off the end of the file"
        return out

    @property
    def last_stage(self) -> int:
        return max(i.stage for i in self.instructions)

    def of(self, keyword: str, stage: int | None = None) -> list[Instruction]:
        if stage == -1:
            stage = self.last_stage
        return [i for i in self.instructions if i.keyword == keyword and stage in (None, i.stage)]

    def global_args(self) -> dict[str, str]:
        out = {}
        for i in self.of("ARG", None):
            if i.stage == -1:
                name, _, default = i.args.partition("=")
                out[name] = default
        return out

    def copies(
        self, stage: int | None = None, from_stage: bool = False
    ) -> list[tuple[list[str], str]]:
        """(sources, destination) of each COPY/ADD; build-context ones unless from_stage."""
        out = []
        for i in self.of("COPY", stage) + self.of("ADD", stage):
            words = shlex.split(i.args)
            flags = [w for w in words if w.startswith("--")]
            rest = [w for w in words if not w.startswith("--")]
            has_from = any(f.startswith("--from=") for f in flags)
            if has_from == from_stage:
                out.append((rest[:-1], rest[-1]))
        return out

    def image_env(self, **build_args: str) -> dict[str, str]:
        """The final stage's ENV as a container gets it: ${NAME} expanded from the ARG
        values in effect (their defaults unless given)."""
        values: dict[str, str] = {}
        env: dict[str, str] = {}
        for i in sorted(self.of("ARG", -1) + self.of("ENV", -1), key=lambda i: i.line):
            name, _, value = i.args.partition("=")
            value = re.sub(r"\$\{(\w+)\}", lambda m: values.get(m[1], ""), value)
            if i.keyword == "ARG":
                values[name] = build_args.get(name, value)
            else:
                values[name] = env[name] = value
        return env

    def exec_form(self, keyword: str) -> list[str]:
        [instruction] = self.of(keyword, -1)
        args = instruction.args
        if keyword == "HEALTHCHECK":
            args = args[args.index("CMD ") + 4 :]
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value
