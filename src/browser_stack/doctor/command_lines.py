"""How the stack's programs read their command lines, for the doctor: Chromium's
switches (and Debian's /usr/bin/chromium script in front of it), Xvnc's
parameters, a command-line option that takes a value (mcp-server-browser), and
what a shell or env wrapper runs.

Each rule was taken from the program itself (tests/e2e/test_doctor_flags_real.py
runs the real Chromium and Xvnc on the same command lines and compares).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

SHELLS = frozenset({"sh", "bash", "dash", "ash", "zsh", "ksh"})
# Debian's /usr/bin/chromium is a shell script; this comment marks the loop that
# moves the `--` flags before the first other word to the end of the line.
DEBIAN_CHROMIUM_MARK = "Preserve (unknown to us) chromium flags at the end of the stack"
# Chromium's port: a sign, leading zeros and trailing blanks pass; anything else
# (a leading blank, a letter, "$VAR") and it does not listen at all.
_CHROMIUM_PORT = re.compile(r"\+?([0-9]+)\s*")
_X_DISPLAY = re.compile(r":([0-9]+)")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=.*")


@dataclass(frozen=True)
class Switch:
    """The occurrence of a switch that counts: its value, and the words that
    wrote it (the flag, and the word after it when written `--name value`)."""

    value: str
    words: tuple[str, ...]


def debian_order(args: Sequence[str]) -> list[str]:
    """The arguments as Debian's chromium script hands them to the binary: the
    `--` flags before the first other word (or a `--`, which it drops) go last."""
    moved: list[str] = []
    rest = list(args)
    while rest:
        word = rest[0]
        if word in ("-g", "--debug", "--temp-profile"):
            rest.pop(0)
        elif word == "--":
            rest.pop(0)
            break
        elif word.startswith("--"):
            moved.append(rest.pop(0))
        else:
            break
    return rest + moved


def chromium_switch(args: Sequence[str], name: str, *, debian: bool = False) -> Switch | None:
    """The switch `name` as Chromium reads `args` (argv without argv[0]):
    `--name=value` or `-name=value`, `--name` alone an empty value, the last one
    counting, nothing after a `--`. With `debian`, through Debian's script first."""
    ordered = debian_order(args) if debian else list(args)
    found: tuple[str, int] | None = None
    for i, word in enumerate(ordered):
        if word == "--":
            break
        body = word[2:] if word.startswith("--") else word[1:] if word.startswith("-") else None
        if body is not None and body.partition("=")[0] == name:
            found = (word, i)
    if found is None:
        return None
    word, i = found
    _key, eq, value = word.lstrip("-").partition("=")
    words: tuple[str, ...] = (word,)
    following = ordered[i + 1] if i + 1 < len(ordered) else None
    if not eq and following is not None and not following.startswith("-"):
        words = (word, following)  # `--name value`: Chromium takes the value as a URL
    return Switch(value, words)


def chromium_port(value: str) -> int | None:
    """The port Chromium listens on for this value (0: one it picks), or None."""
    match = _CHROMIUM_PORT.fullmatch(value)
    if match is None:
        return None
    port = int(match[1])
    return port if port <= 65535 else None


def xvnc_display(args: Sequence[str]) -> int | None:
    """Xvnc's display: the last `:N` word (None: none, so :0)."""
    numbers = [int(m[1]) for word in args if (m := _X_DISPLAY.fullmatch(word))]
    return numbers[-1] if numbers else None


def xvnc_parameter(args: Sequence[str], name: str) -> Switch | None:
    """A parameter as Xvnc reads it, case-insensitive, the last one counting:
    `-name value`, `-name=value`, `--name=value` or `name=value`. `--name value`
    makes Xvnc exit ("Unrecognized option"): its value is then "", with the
    words that wrote it."""
    found: Switch | None = None
    lowered = name.lower()
    for i, word in enumerate(args):
        key, eq, value = word.partition("=")
        bare = key.lstrip("-")
        if bare.lower() != lowered or key.startswith("---"):
            continue
        if eq:
            found = Switch(value, (word,))
        elif key.startswith("--"):
            # An error to Xvnc ("Unrecognized option"), with the value meant for it.
            found = Switch("", tuple(args[i : i + 2]))
        elif key.startswith("-") and i + 1 < len(args):
            found = Switch(args[i + 1], (word, args[i + 1]))
    return found


def option_value(args: Sequence[str], name: str) -> Switch | None:
    """`--name value` or `--name=value`, the last one counting (a Node.js CLI)."""
    found: Switch | None = None
    for i, word in enumerate(args):
        if word.startswith(name + "="):
            found = Switch(word[len(name) + 1 :], (word,))
        elif word == name and i + 1 < len(args):
            found = Switch(args[i + 1], (word, args[i + 1]))
    return found


def _script_commands(script: str) -> list[list[str]]:
    lexer = shlex.shlex(script, posix=True, punctuation_chars=";&|()")
    lexer.whitespace_split = True
    commands: list[list[str]] = [[]]
    try:
        for token in lexer:
            if token and set(token) <= set(";&|()"):
                commands.append([])
            else:
                commands[-1].append(token)
    except ValueError:
        return []
    return [c for c in commands if c]


def unwrap(argv: Sequence[str], known: Sequence[str] = ()) -> tuple[list[str], bool | None]:
    """The command a wrapper line runs, and whether the program's own process
    becomes it: `sh -c '... exec chromium ...'` (the command that runs one of
    `known`, else the last), `env [VAR=x] chromium ...`. True: each layer execs;
    None: a shell that may fork (not visible from the line)."""
    words = list(argv)
    direct: bool | None = True
    for _ in range(4):
        if not words:
            break
        name = os.path.basename(words[0])
        if name == "env":
            i = 1
            while i < len(words) and ("=" in words[i] or words[i].startswith("-")):
                i += 1
            words = words[i:]
            continue
        options = [i for i, w in enumerate(words[1:], 1) if w.startswith("-") and "c" in w[1:]]
        if name not in SHELLS or not options or options[0] + 1 >= len(words):
            break
        commands = _script_commands(words[options[0] + 1])
        if not commands:
            break
        chosen = commands[-1]
        for command in commands:
            plain = [w for w in command if w != "exec" and not _ASSIGNMENT.fullmatch(w)]
            if plain and os.path.basename(plain[0]) in known:
                chosen = command
        words = list(chosen)
        while words and _ASSIGNMENT.fullmatch(words[0]):
            words.pop(0)
        execs = words[:1] == ["exec"]
        words = words[1:] if execs else words
        if not execs:
            direct = None
    return words, direct
