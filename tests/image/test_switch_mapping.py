"""Which of the five each of the AIO image's own switches keeps stopped, written
down once (stack.DISABLED_BY), against every place that plays the image's part:
the AIO stand-in the container tier runs (its run.sh and program files), the
stand-ins of the boot-path and other-base tests, and boot.py's run.sh mapping,
which the doctor reads supervisord's files with."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

from browser_stack.doctor.boot import RUN_SH_AUTOSTART
from browser_stack.stack import DISABLED_BY, PROGRAMS
from browser_stack.switches import IMAGE_SWITCHES

from ..container import other_base
from . import aio_boot

REPO = Path(__file__).resolve().parents[2]
STANDIN = REPO / "tests" / "container" / "aio-standin"
WANT = {name: sorted(str(p) for p in programs) for name, programs in DISABLED_BY.items()}


def mapping(
    run_sh_autostart: dict[str, str], program_autostart: dict[str, str]
) -> dict[str, list[str]]:
    """DISABLE_* -> the programs whose autostart follows it: run.sh's AUTOSTART_X
    from DISABLE_Y, and each program's autostart=%(ENV_AUTOSTART_X)s."""
    out: dict[str, list[str]] = {name: [] for name in IMAGE_SWITCHES}
    for program, autostart in program_autostart.items():
        if program in PROGRAMS:
            out[run_sh_autostart[autostart]].append(program)
    return {name: sorted(programs) for name, programs in out.items()}


def run_sh_lines(text: str) -> dict[str, str]:
    """`AUTOSTART_X=$(autostart "${DISABLE_Y-}")` lines of a stand-in run.sh."""
    pattern = r'^(AUTOSTART_\w+)=\$\(autostart "\$\{(DISABLE_\w+)-\}"\)$'
    return dict(re.findall(pattern, text, flags=re.MULTILINE))


def program_files(text: str) -> dict[str, str]:
    parser = configparser.RawConfigParser()
    parser.read_string(text)
    found = {}
    for section in parser.sections():
        if section.startswith("program:"):
            value = parser.get(section, "autostart")
            match = re.fullmatch(r"%\(ENV_(AUTOSTART_\w+)\)s", value)
            assert match, (section, value)
            found[section.removeprefix("program:")] = match[1]
    return found


def test_the_mapping_covers_the_image_switches() -> None:
    assert tuple(WANT) == IMAGE_SWITCHES


def test_the_container_tiers_aio_standin_agrees() -> None:
    run_sh = run_sh_lines((STANDIN / "run.sh").read_text())
    programs = program_files((STANDIN / "supervisord" / "browser.conf").read_text())
    assert mapping(run_sh, programs) == WANT


def test_the_boot_path_standin_agrees() -> None:
    run_sh = run_sh_lines(aio_boot.RUN_SH)
    programs = {name: var for name, (var, _cmd, _more) in aio_boot.IMAGE_PROGRAMS.items()}
    assert mapping(run_sh, programs) == WANT


def test_the_other_base_agrees() -> None:
    programs = {n: var for n, (_cmd, var, _more) in other_base.PROGRAMS_OF_THE_BASE.items()}
    assert mapping(RUN_SH_AUTOSTART, programs) == WANT


def test_boot_reads_run_sh_the_same_way() -> None:
    standin = run_sh_lines((STANDIN / "run.sh").read_text())
    assert {k: v for k, v in RUN_SH_AUTOSTART.items() if v in IMAGE_SWITCHES} == standin
