"""Programs that cannot start: what ensure reports, and recovery from FATAL."""

from __future__ import annotations

from ..helpers import Sidecar
from .conftest import PROGRAMS, Stack

CRASH_LINE = "browser stand-in: crashing on purpose"
ONE_EACH = dict.fromkeys(PROGRAMS, 1)


def test_crashing_program_gives_502_naming_it_with_its_last_words(
    stack: Stack, sidecar: Sidecar
) -> None:
    # startretries=0: supervisord gives up at once (FATAL) instead of retrying for
    # seconds; the sidecar may still see BACKOFF on the way there.
    stack.apply_config(modes={"browser": "crash"}, startretries={"browser": 0})

    response = sidecar.ensure()

    assert response.status == 502, response.body
    body = response.body
    assert body["error"] == "program_failed"
    assert body["program"] == "browser"
    assert "browser" in body["message"]
    assert body["state"] in ("BACKOFF", "FATAL")
    assert body["spawnerr"]  # supervisord's "Exited too quickly ..."
    assert CRASH_LINE in body["stderr_tail"]

    # status explains the failure too, and starts nothing.
    stack.wait_state("browser", "FATAL")
    spawned = stack.starts()
    status = sidecar.status()
    browser = status.body["programs"]["browser"]
    assert browser["state"] == "FATAL"
    assert browser["ready"] is False
    assert CRASH_LINE in browser["reason"]["stderr_tail"]
    assert status.body["ready"]["cdp"] is False
    assert stack.starts() == spawned


def test_program_already_fatal_is_recovered_by_ensure(stack: Stack, sidecar: Sidecar) -> None:
    stack.apply_config(startretries={"browser": 0})
    fault = stack.faults / "browser"
    fault.touch()  # the stand-in crashes while this file exists
    stack.supervisorctl("start", "browser", check=False)
    stack.wait_state("browser", "FATAL")
    fault.unlink()  # fixed outside supervisord's config: browser stays FATAL
    # On a busy machine supervisord may count a crash as RUNNING-then-exited and
    # autorestart it once more, so count spawns from here on.
    before = stack.starts()

    assert stack.info("browser")["statename"] == "FATAL"
    response = sidecar.ensure()

    assert response.status == 200, response.body
    assert response.body["programs"]["browser"]["ready"] is True
    assert "browser" in response.body["started"]
    assert stack.starts() - before == ONE_EACH


def test_program_fatal_from_its_config_recovers_once_the_config_is_fixed(
    stack: Stack, sidecar: Sidecar
) -> None:
    stack.apply_config(modes={"browser": "crash"}, startretries={"browser": 0})
    stack.supervisorctl("start", "browser", check=False)
    stack.wait_state("browser", "FATAL")

    before = stack.starts()

    stack.apply_config()  # reread + update: the fixed program is re-added, STOPPED
    response = sidecar.ensure()

    assert response.status == 200, response.body
    assert response.body["programs"]["browser"]["ready"] is True
    assert stack.starts() - before == ONE_EACH
