"""The doctor's reading of Chromium's and Xvnc's command lines, against the real
programs: generated families of layouts (the project's supervisord.d with one
change to the browser's or Xvnc's command), each fed to the doctor and to
supervisord with the real five (tests/integration/layouts.py, real=True).

The property of tests/integration/test_doctor_families.py (no fail for a layout
that comes up, a fail for one that does not, fixes that make their check pass),
and for Chromium one more: the port the doctor says Chromium listens on is the
one it listens on (none when it says none).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from ..integration.layouts import (
    Case,
    Change,
    Layout,
    Result,
    case,
    disagreements,
    get_option,
    local_stack,
    option,
    run_selected,
    swap,
)
from .conftest import missing_programs

# Chromium is the heavy one (about 200 MiB and a second of CPU to start).
WORKERS = 3
CDP = "--remote-debugging-port=%(ENV_BROWSER_STACK_PROGRAM_CDP_PORT)s"
RFB = "-rfbport %(ENV_BROWSER_STACK_PROGRAM_VNC_PORT)s"


def chromium(name: str, new: Callable[[Layout], str], old: str = CDP) -> Case:
    return case("browser-command", name, swap("browser", old, new), real=True)


def spare(layout: Layout) -> int:
    return layout.spare_ports[0]


def wrapped(shell: str, exec_: str) -> Callable[[Layout], Change]:
    def change(layout: Layout) -> Change:
        text = get_option(layout, "program:browser", "command") or ""
        return option("program:browser", "command", f'{shell} -c "{exec_}{text}"')

    return change


def chromium_family() -> list[Case]:
    port = "%(ENV_BROWSER_STACK_PROGRAM_CDP_PORT)s"
    return [
        chromium("--name=value", lambda _: CDP),
        chromium("-name=value", lambda _: CDP[1:]),
        chromium("--name value", lambda _: f"--remote-debugging-port {port}"),
        chromium("a stray space", lambda _: f"--remote-debugging-port= {port}"),
        chromium(
            "twice, another port last", lambda la: f"{CDP} --remote-debugging-port={spare(la)}"
        ),
        chromium("twice, its port last", lambda la: f"--remote-debugging-port={spare(la)} {CDP}"),
        chromium(
            "another port after the URL",
            lambda la: f"about:blank --remote-debugging-port={spare(la)}",
            old="about:blank",
        ),
        chromium("a shell variable", lambda _: "--remote-debugging-port=$CDP_PORT"),
        chromium("in capitals", lambda _: f"--REMOTE-DEBUGGING-PORT={port}"),
        chromium("a leading zero and a sign", lambda _: f"--remote-debugging-port=+0{port}"),
        chromium("port 0", lambda _: "--remote-debugging-port=0"),
        chromium("no port", lambda _: ""),
        chromium("-- first", lambda _: "-- --no-sandbox", old="--no-sandbox"),
        case("browser-command", "bash -c exec", wrapped("bash", "exec "), real=True),
        case("browser-command", "sh -c without exec", wrapped("sh", ""), real=True),
        chromium(
            "a relative profile",
            lambda _: "--user-data-dir=profile",
            old="--user-data-dir=%(ENV_BROWSER_STACK_PROFILE_DIR)s",
        ),
    ]


def xvnc(name: str, new: Callable[[Layout], str], old: str = RFB) -> Case:
    return case("tigervnc-command", name, swap("tigervnc", old, new), real=True)


def xvnc_family() -> list[Case]:
    port = "%(ENV_BROWSER_STACK_PROGRAM_VNC_PORT)s"
    return [
        xvnc("-rfbport=N", lambda _: f"-rfbport={port}"),
        xvnc("rfbport=N", lambda _: f"rfbport={port}"),
        xvnc("--rfbport=N", lambda _: f"--rfbport={port}"),
        xvnc("--rfbport N", lambda _: f"--rfbport {port}"),
        xvnc("-RFBPORT N", lambda _: f"-RFBPORT {port}"),
        xvnc("twice, another port last", lambda la: f"{RFB} -rfbport {spare(la)}"),
        xvnc("twice, its port last", lambda la: f"-rfbport {spare(la)} {RFB}"),
        # Far from any display in use; Xvnc takes the last.
        xvnc(
            "a second display",
            lambda la: f"%(ENV_BROWSER_STACK_X_DISPLAY)s :{int(la.env['DISPLAY'][1:]) + 1000}",
            old="%(ENV_BROWSER_STACK_X_DISPLAY)s",
        ),
        xvnc("no -rfbport", lambda _: ""),
    ]


CASES = [*chromium_family(), *xvnc_family()]


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Result | BaseException]:
    missing = local_stack.missing_executables(local_stack.search_path())
    if missing:
        missing_programs(f"the real programs are not on PATH: {', '.join(missing)}")
    return run_selected(request.session.items, __name__, tmp_path_factory.mktemp("flags"), WORKERS)


def _named_port(result: Result) -> int | None:
    """The port the doctor says Chromium listens on (None: none)."""
    check = result.doctor.checks["browser-command"]
    if check["verdict"] == "ok":
        return int(check["saw"].rsplit(" ", 1)[1])
    found = re.match(r"--remote-debugging-port (\d+), but", check["saw"])
    return int(found[1]) if found else None


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_doctor_reads_the_command_as_the_program_does(
    case: Case, results: dict[str, Result | BaseException]
) -> None:
    result = results[case.id]
    if isinstance(result, BaseException):
        raise result
    problems = disagreements(result)
    if case.family == "browser-command" and result.real.refused is None:
        listening = result.real.listening.get("browser", frozenset())
        named = _named_port(result)
        saw = result.doctor.checks["browser-command"]["saw"]
        if "a port picked at random" in saw:
            if len(listening) != 1:
                problems.append(f"Chromium listens on {sorted(listening)}, not one random port")
        elif listening != (frozenset() if named is None else frozenset({named})):
            problems.append(f"Chromium listens on {sorted(listening)}; the doctor: {saw}")
    assert not problems, result.describe() + "\n" + "\n".join(problems)
