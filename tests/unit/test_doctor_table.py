"""The doctor's table of checks: the report follows it row by row, and "not
checked" comes from a row's needs, the first one missing saying why."""

from __future__ import annotations

import pytest

from browser_stack.doctor import CHECKS, DoctorFacts, run_checks
from browser_stack.doctor.checks import Source, Verdict

pytestmark = pytest.mark.unit

NO_CONFIG = "not checked: supervisord's configuration is not known"
NO_SETTINGS = "not checked: the sidecar's settings are invalid"

# supervisord unreachable and the sidecar's settings invalid: nothing is known.
NOTHING_KNOWN = DoctorFacts(
    source=Source("live", "unix:///nowhere.sock", error="supervisord does not answer"),
    env={"DISABLE_BROWSER_STACK": "maybe"},
    settings_error="BROWSER_STACK_LISTEN is not an address",
    switch_error="the switch is invalid: maybe",
)

# Which missing input each check names when all are missing: the order of a
# row's needs decides it.
EXPECTED = {
    "supervisor-rpc": NO_CONFIG,
    "programs": NO_CONFIG,
    "sidecar-program": NO_CONFIG,
    "autostart": NO_CONFIG,
    "browser-stop": NO_CONFIG,
    "browser-stop-signal": NO_CONFIG,
    "browser-profile": NO_CONFIG,
    "tigervnc-command": NO_SETTINGS,
    "browser-command": NO_SETTINGS,
    "mcp-command": NO_SETTINGS,
    "websocat-command": NO_SETTINGS,
    "x-clients-display": NO_CONFIG,
    "executables": NO_CONFIG,
    "wait-ports": NO_SETTINGS,
    "stack-ports": NO_SETTINGS,
    "x-lock": NO_SETTINGS,
}


def test_a_live_report_has_every_row_of_the_table_in_its_order() -> None:
    names = [check.name for check in run_checks(NOTHING_KNOWN)]
    assert names == [spec.name for spec in CHECKS]


def test_a_static_report_leaves_out_the_live_only_rows() -> None:
    static = DoctorFacts(source=Source("static", "/nowhere.conf", error="no such file"), env={})
    names = [check.name for check in run_checks(static)]
    assert names == [spec.name for spec in CHECKS if not spec.live_only]
    assert {"stack-ports", "x-lock", "pidfd"} <= {spec.name for spec in CHECKS}


def test_each_row_with_a_need_missing_says_which() -> None:
    checks = {check.name: check for check in run_checks(NOTHING_KNOWN)}
    not_checked = {n: c.saw for n, c in checks.items() if c.saw.startswith("not checked")}
    assert not_checked == EXPECTED
    assert {checks[n].verdict for n in EXPECTED} == {Verdict.WARN}


def test_rows_without_needs_run_whatever_is_missing() -> None:
    checks = {check.name: check for check in run_checks(NOTHING_KNOWN)}
    assert checks["sidecar-settings"].verdict == Verdict.FAIL
    assert "BROWSER_STACK_LISTEN" in checks["sidecar-settings"].saw
    assert checks["supervisord"].verdict == Verdict.FAIL
    assert checks["supervisord"].saw == "supervisord does not answer"
    without_needs = {spec.name for spec in CHECKS if not spec.needs}
    assert without_needs == set(checks) - set(EXPECTED)
