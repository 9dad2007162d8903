from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import pytest

from browser_stack.backoff import FIRST_DELAY_S, MAX_DELAY_S, delay_s
from browser_stack.errors import (
    ProgramFailed,
    ReadinessTimeout,
    StackStopped,
    SupervisorUnavailable,
)
from browser_stack.readiness import Readiness
from browser_stack.stack import GATES, PROGRAMS, Gate, Program
from browser_stack.states import Fault, ProcessState

from ..helpers import until
from .fakes import FAST, FakeSupervisor, Recorder, make_controller

pytestmark = pytest.mark.usefixtures("virtual_time")
ALL = frozenset(GATES)


async def test_cold_ensure_starts_each_program_once_and_reports_endpoints() -> None:
    controller, sup = make_controller()
    result = await controller.ensure(ALL, 5)
    assert result.cold is True
    assert sorted(result.started) == sorted(PROGRAMS)
    assert sorted(sup.starts()) == sorted(PROGRAMS)
    assert all(status.ready for status in result.programs.values())
    assert result.endpoints["cdp"] == "http://127.0.0.1:9222"
    assert result.endpoints["cdp_ws"] == "ws://127.0.0.1:9222/devtools/browser/fake"
    assert result.endpoints["mcp"] == "http://127.0.0.1:8100/sse"
    assert result.endpoints["vnc"] == "127.0.0.1:5900"
    assert result.endpoints["vnc_ws"] == "ws://127.0.0.1:6080"


async def test_warm_ensure_starts_nothing() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    await asyncio.sleep(0.02)
    calls_before = len(sup.calls)
    result = await controller.ensure(ALL, 5)
    assert result.cold is False
    assert result.started == []
    assert len(sup.calls) == calls_before


async def test_programs_spawn_only_after_what_they_need_is_ready() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.TIGERVNC].ready_after_s = 0.05
    controller, _ = make_controller(sup)
    await controller.ensure(ALL, 5)
    assert sup.spawn_violations == []
    starts = sup.starts()
    # Independent programs go first and together; the X clients after X answers.
    assert set(starts[:2]) == {"tigervnc", "mcp-server-browser"}
    assert set(starts[2:]) == {"openbox", "browser", "websocat"}


async def test_two_hundred_concurrent_ensures_start_each_program_once() -> None:
    controller, sup = make_controller()
    results = await asyncio.gather(*(controller.ensure(ALL, 5) for _ in range(200)))
    assert len(results) == 200
    for program in PROGRAMS:
        assert sup.starts(program) == [program]
    assert sum(r.cold for r in results) >= 1
    assert all(r.programs[Program.BROWSER].ready for r in results)


async def test_a_caller_that_goes_away_does_not_cancel_the_start() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.1
    controller, _ = make_controller(sup)
    caller = asyncio.ensure_future(controller.ensure(ALL, 5))
    await asyncio.sleep(0.02)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert sup.starts(Program.BROWSER) == ["browser"]


async def test_cdp_only_answers_before_the_rest_is_ready() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.WEBSOCAT].ready_after_s = 0.3
    controller, _ = make_controller(sup)
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert not result.programs[Program.WEBSOCAT].ready
    # ...and the rest still comes up in the background.
    result = await controller.ensure(frozenset({Gate.VNC}), 5)
    assert result.programs[Program.WEBSOCAT].ready
    assert sup.starts(Program.WEBSOCAT) == ["websocat"]


async def test_what_the_gates_do_not_need_is_spawned_once_they_are_ready() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.05
    controller, _ = make_controller(sup)
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    starts = sup.starts()
    # Chromium's start does not share the CPU with the programs CDP does not need.
    assert starts[:2] == ["tigervnc", "browser"]
    assert set(starts[2:]) <= {"mcp-server-browser", "openbox", "websocat"}
    await controller.ensure(ALL, 5)
    assert sorted(sup.starts()) == sorted(PROGRAMS)
    assert sup.spawn_violations == []


async def test_a_caller_joining_a_start_releases_what_its_gates_need() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.3
    controller, _ = make_controller(sup)
    cdp = asyncio.ensure_future(controller.ensure(frozenset({Gate.CDP}), 5))
    await asyncio.sleep(0.05)
    assert "websocat" not in sup.starts()
    vnc = await controller.ensure(frozenset({Gate.VNC}), 5)
    # VNC did not wait for the browser the first caller needs.
    assert vnc.programs[Program.WEBSOCAT].ready
    assert not vnc.programs[Program.BROWSER].ready
    assert (await cdp).programs[Program.BROWSER].ready


async def test_timeout_names_pending_gates_and_programs_and_start_goes_on() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.2
    controller, _ = make_controller(sup)
    with pytest.raises(ReadinessTimeout) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 0.05)
    assert caught.value.fields["pending_gates"] == ["cdp"]
    assert "browser" in caught.value.fields["pending_programs"]
    assert caught.value.status == 504
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert sup.starts(Program.BROWSER) == ["browser"]


async def test_crash_loop_is_retried_then_reported_with_state_and_stderr() -> None:
    sup = FakeSupervisor()
    chrome = sup.programs[Program.BROWSER]
    chrome.crash_on_start = True
    chrome.stderr = "Missing X server or $DISPLAY"
    controller, _ = make_controller(sup, max_attempts=3)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    error = caught.value
    assert error.status == 502
    assert error.fields["program"] == "browser"
    assert error.fields["state"] == "FATAL"
    assert "Exited too quickly" in error.fields["spawnerr"]
    assert error.fields["stderr_tail"] == "Missing X server or $DISPLAY"
    assert len(sup.starts(Program.BROWSER)) == 3


async def test_a_crash_that_stops_recurring_is_recovered() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].crash_on_start = True
    sup.programs[Program.BROWSER].crashes_left = 1
    controller, _ = make_controller(sup)
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert len(sup.starts(Program.BROWSER)) == 2


async def test_fatal_program_found_at_ensure_is_stopped_and_started_again() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].state = ProcessState.FATAL
    controller, _ = make_controller(sup)
    result = await controller.ensure(ALL, 5)
    assert result.programs[Program.BROWSER].ready
    assert ("stop", "browser") in sup.calls


async def test_dependents_fail_with_the_root_cause() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.TIGERVNC].crash_on_start = True
    sup.programs[Program.TIGERVNC].stderr = "Server is already active for display 99"
    controller, _ = make_controller(sup)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert caught.value.fields["program"] == "tigervnc"
    assert sup.starts(Program.BROWSER) == []


async def test_running_but_never_ready_is_restarted_then_fails() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].hung = True
    sup.programs[Program.BROWSER].state = ProcessState.RUNNING
    controller, _ = make_controller(sup, max_attempts=2)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert "not ready after" in caught.value.message
    assert ("stop", "browser") in sup.calls


def waited_for_a_cpu(sup: FakeSupervisor, share: float) -> Callable[[int], float | None]:
    """A run-queue wait reader: each process waited `share` of its life for a CPU."""

    def cpu_wait(pid: int) -> float | None:
        for program in sup.programs.values():
            if program.pid == pid and pid > 0:
                return share * (sup.now() - program.started_at)
        return None

    return cpu_wait


async def test_time_waiting_for_a_cpu_does_not_count_against_the_ready_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A slow start on a busy machine: ready after 1.2 s, more than the 0.5 s
    # grace, but 90% of it spent waiting for a CPU.
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 1.2
    controller, _ = make_controller(sup, cpu_wait=waited_for_a_cpu(sup, 0.9))
    with caplog.at_level("INFO", logger="browser_stack.bringup"):
        result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert sup.starts(Program.BROWSER) == ["browser"]
    assert ("stop", "browser") not in sup.calls
    assert any("waiting for a CPU: the grace goes on" in r.message for r in caplog.records)


async def test_the_same_slow_start_without_the_wait_is_restarted() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 1.2
    controller, _ = make_controller(sup, cpu_wait=waited_for_a_cpu(sup, 0.0), max_attempts=2)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert "not ready after 0.5 s" in caught.value.message
    assert len(sup.starts(Program.BROWSER)) == 2


async def test_a_hung_program_is_still_restarted_on_a_busy_machine() -> None:
    # Waiting for a CPU part of the time does not save a program that never
    # answers: the grace counts the rest.
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].hung = True
    sup.programs[Program.BROWSER].state = ProcessState.RUNNING
    controller, _ = make_controller(sup, cpu_wait=waited_for_a_cpu(sup, 0.3), max_attempts=2)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert "waiting for a CPU" in caught.value.message
    assert ("stop", "browser") in sup.calls


async def test_the_log_names_the_state_each_program_really_had(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # It said "start failed program=browser state=RUNNING" for a browser that was
    # never spawned, because Xvnc (RUNNING, never ready) failed first.
    sup = FakeSupervisor()
    sup.programs[Program.TIGERVNC].hung = True
    sup.programs[Program.TIGERVNC].state = ProcessState.RUNNING
    controller, _ = make_controller(sup, max_attempts=1)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert caught.value.fields["program"] == "tigervnc"
    assert sup.starts(Program.BROWSER) == []
    lines = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("start failed program=tigervnc state=RUNNING") for line in lines)
    browser = [line for line in lines if "program=browser" in line]
    assert browser == ["not started program=browser state=STOPPED: it needs tigervnc, which failed"]


async def test_unconfigured_program_is_a_clear_failure_without_retries() -> None:
    sup = FakeSupervisor(unconfigured={Program.WEBSOCAT})
    controller, _ = make_controller(sup)
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.VNC}), 5)
    assert "not configured" in caught.value.message
    assert caught.value.fields["state"] == "NOT_CONFIGURED"


async def test_supervisor_unreachable_is_reported() -> None:
    sup = FakeSupervisor(reachable=False)
    controller, _ = make_controller(sup)
    with pytest.raises(SupervisorUnavailable):
        await controller.ensure(ALL, 1)
    sup.reachable = True
    result = await controller.ensure(ALL, 5)
    assert result.cold


async def test_a_program_that_died_after_ready_is_started_again() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    sup.programs[Program.BROWSER].state = ProcessState.EXITED
    statuses = (await controller.reader.status()).programs
    assert statuses[Program.BROWSER].state == "EXITED"
    assert not statuses[Program.BROWSER].ready
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert result.cold
    assert len(sup.starts(Program.BROWSER)) == 2


async def test_stop_goes_in_reverse_dependency_order() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    result = await controller.stop()
    stops = [n for c, n in sup.calls if c == "stop"]
    assert sorted(result.stopped) == sorted(PROGRAMS)
    assert stops.index("mcp-server-browser") < stops.index("browser")
    for user in ("openbox", "browser", "websocat"):
        assert stops.index(user) < stops.index("tigervnc")
    again = await controller.stop()
    assert again.stopped == []


async def test_stop_during_ensure_fails_the_waiting_callers_with_stopped() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.3
    controller, _ = make_controller(sup)
    waiting = asyncio.ensure_future(controller.ensure(frozenset({Gate.CDP}), 5))
    await asyncio.sleep(0.05)
    result = await controller.stop()
    assert result.cancelled_start
    with pytest.raises(StackStopped):
        await waiting
    assert all(p.state == ProcessState.STOPPED for p in sup.programs.values())


async def test_ensure_during_stop_waits_for_the_stop_then_starts() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    stopping = asyncio.ensure_future(controller.stop())
    await asyncio.sleep(0)
    result = await controller.ensure(ALL, 5)
    await stopping
    assert result.cold
    assert all(s.ready for s in result.programs.values())
    assert len(sup.starts(Program.BROWSER)) == 2


async def test_status_never_starts_anything_and_explains_failures() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].state = ProcessState.FATAL
    sup.programs[Program.BROWSER].spawnerr = "Exited too quickly"
    sup.programs[Program.BROWSER].stderr = "bind() failed"
    controller, _ = make_controller(sup)
    statuses = (await controller.reader.status()).programs
    assert sup.calls == []
    assert statuses[Program.BROWSER].reason == {
        "spawnerr": "Exited too quickly",
        "stderr_tail": "bind() failed",
    }
    assert statuses[Program.TIGERVNC].state == "STOPPED"


async def test_warm_ensures_ask_nobody() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    await asyncio.sleep(0.5)  # the rest of the stack has come up
    probes, calls, reads = len(sup.probe_calls), len(sup.calls), sup.info_calls
    results = await asyncio.gather(*(controller.ensure(ALL, 5) for _ in range(100)))
    assert all(not r.cold and r.programs[Program.BROWSER].ready for r in results)
    assert (len(sup.probe_calls), len(sup.calls), sup.info_calls) == (probes, calls, reads)


async def test_a_foreign_process_on_the_port_is_named_at_once() -> None:
    from browser_stack.core_types import PortHolder
    from browser_stack.errors import PortInUse

    async def holder(port: int) -> PortHolder | None:
        return PortHolder(port, 4242, "python3 -m http.server 9222") if port == 9222 else None

    controller, sup = make_controller(port_holder=holder)
    with pytest.raises(PortInUse) as caught:
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert caught.value.fields["port"] == 9222
    assert caught.value.fields["pid"] == 4242
    assert "held by pid 4242" in caught.value.message
    assert sup.starts(Program.BROWSER) == []  # not retried: it cannot help


async def test_a_hung_browser_is_restarted_with_the_mcp_server_that_uses_it() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    sup.programs[Program.BROWSER].hung = True
    sup.programs[Program.BROWSER].restart_cures_hang = True
    assert controller.model.readiness(Program.BROWSER) == Readiness.READY  # nothing told yet
    await controller.liveness.check()  # a hang shows only to a liveness check
    assert controller.model.readiness(Program.BROWSER) == Readiness.STARTING
    result = await controller.ensure(frozenset({Gate.MCP}), 5)
    assert result.programs[Program.BROWSER].ready
    stops = [n for c, n in sup.calls if c == "stop"]
    assert stops == ["mcp-server-browser", "browser"]
    assert ("resume", "browser") in sup.calls
    assert len(sup.starts(Program.BROWSER)) == 2
    assert len(sup.starts(Program.MCP_SERVER_BROWSER)) == 2
    assert result.programs[Program.MCP_SERVER_BROWSER].ready


async def test_a_failure_older_than_the_call_is_not_handed_to_it() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].crash_on_start = True
    sup.programs[Program.BROWSER].crashes_left = 3  # fails one whole ensure, then works
    sup.programs[Program.WEBSOCAT].ready_after_s = 0.3  # keeps the first run alive
    controller, _ = make_controller(sup, max_attempts=3)
    with pytest.raises(ProgramFailed):
        await controller.ensure(frozenset({Gate.CDP}), 5)
    assert controller.starting  # the failed run is still bringing up websocat
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready


async def test_a_start_asks_chromium_until_its_first_pass_and_no_more() -> None:
    controller, sup = make_controller()
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.cold and result.programs[Program.BROWSER].ready
    assert result.endpoints["cdp_ws"] == "ws://127.0.0.1:9222/devtools/browser/fake"
    assert sup.probe_calls.count((Program.BROWSER, True)) == 1
    await controller.ensure(frozenset({Gate.CDP}), 5)
    assert sup.probe_calls.count((Program.BROWSER, True)) == 1


# -- readiness from events ---------------------------------------------------------


async def test_an_exit_ends_readiness_at_once_and_is_logged_with_how_it_ended(
    caplog: pytest.LogCaptureFixture,
) -> None:
    recorder = Recorder()
    controller, sup = make_controller(observer=recorder)
    await controller.ensure(ALL, 5)
    pid = sup.programs[Program.BROWSER].pid
    sup.kill(Program.BROWSER)
    # No request of any kind in between: the model knows, and the log says how.
    assert controller.model.readiness(Program.BROWSER) == Readiness.FAILED
    assert recorder.exits == ["browser"]
    lines = [r.getMessage() for r in caplog.records if "exited program=browser" in r.getMessage()]
    assert lines == [f"exited program=browser pid={pid}: terminated by SIGKILL"]
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.cold and result.programs[Program.BROWSER].ready
    assert len(sup.starts(Program.BROWSER)) == 2


async def test_where_the_kernel_cannot_say_how_supervisord_tells(
    caplog: pytest.LogCaptureFixture,
) -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    sup.watch.how = ""  # a kernel before 6.15
    pid = sup.programs[Program.BROWSER].pid
    sup.kill(Program.BROWSER)
    assert controller.model.readiness(Program.BROWSER) == Readiness.FAILED
    lines = [r.getMessage() for r in caplog.records if "exited program=browser" in r.getMessage()]
    assert lines == [f"exited program=browser pid={pid}: how it ended: asking supervisord"]
    await until(lambda: any("ended program=browser" in r.getMessage() for r in caplog.records))
    [line] = [r.getMessage() for r in caplog.records if "ended program=browser" in r.getMessage()]
    assert line == (
        f"ended program=browser pid={pid}: terminated by SIGKILL; not expected; "
        "supervisord now: EXITED pid 0"
    )
    assert ("exit_cause", "browser") in sup.calls


async def test_a_stop_of_our_own_is_not_an_exit() -> None:
    recorder = Recorder()
    controller, sup = make_controller(observer=recorder)
    await controller.ensure(ALL, 5)
    await controller.stop()
    assert recorder.exits == []
    assert sup.watch.following == {}


async def test_another_process_named_by_supervisord_is_not_ready_until_it_passes() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    chrome = sup.programs[Program.BROWSER]
    chrome.pid += 1000  # supervisord restarted it behind our back, no exit seen
    chrome.started_at = sup.now()
    chrome.ready_after_s = 0.2
    await controller.reader.refresh()
    assert controller.model.readiness(Program.BROWSER) == Readiness.STARTING
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert result.programs[Program.BROWSER].pid == chrome.pid
    assert len(sup.starts(Program.BROWSER)) == 1  # it was alive: probed, not spawned


async def test_a_pass_goes_stale_without_liveness_checks_and_a_probe_renews_it() -> None:
    recorder = Recorder()
    controller, sup = make_controller(observer=recorder)
    await controller.ensure(frozenset({Gate.CDP}), 5)
    # The pass is fresh for the interval (2 s) plus a probe's timeout (1 s).
    await asyncio.sleep(3.5)
    assert controller.model.readiness(Program.BROWSER) == Readiness.STARTING
    before = sup.probe_calls.count((Program.BROWSER, True))
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert sup.probe_calls.count((Program.BROWSER, True)) == before + 1
    assert sup.starts(Program.BROWSER) == ["browser"]  # probed again, not restarted
    assert recorder.liveness_failures == []


async def test_a_liveness_failure_is_counted_and_the_grace_and_restart_path_applies() -> None:
    recorder = Recorder()
    controller, sup = make_controller(observer=recorder, max_attempts=2)
    await controller.ensure(ALL, 5)
    await asyncio.sleep(0.5)
    chrome = sup.programs[Program.BROWSER]
    chrome.hung, chrome.restart_cures_hang = True, True  # SIGSTOP: alive, silent
    await controller.liveness.check()
    assert recorder.liveness_failures == ["browser"]
    assert controller.model.readiness(Program.BROWSER) == Readiness.STARTING
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.programs[Program.BROWSER].ready
    assert ("resume", "browser") in sup.calls
    assert len(sup.starts(Program.BROWSER)) == 2


async def test_a_user_that_fails_after_a_restart_fails_alone() -> None:
    # Restarting a hung browser restarted its users inside the browser's own
    # attempt: when mcp-server-browser then failed, a needs=cdp ensure answered
    # 502 naming it while the browser was ready, and the browser was restarted
    # a second time.
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    await asyncio.sleep(0.5)
    chrome = sup.programs[Program.BROWSER]
    chrome.hung, chrome.restart_cures_hang = True, True
    sup.programs[Program.MCP_SERVER_BROWSER].crash_on_start = True
    await controller.liveness.check()

    result = await controller.ensure(frozenset({Gate.CDP}), 5)

    assert result.programs[Program.BROWSER].ready
    assert len(sup.starts(Program.BROWSER)) == 2  # restarted once
    with pytest.raises(ProgramFailed) as caught:
        await controller.ensure(frozenset({Gate.MCP}), 5)
    assert caught.value.fields["program"] == "mcp-server-browser"
    assert controller.model.readiness(Program.BROWSER) == Readiness.READY
    assert len(sup.starts(Program.BROWSER)) == 2


# -- memory proportional to use: BROWSER_STACK_START=needed, warming ahead ----------

NEEDED = replace(FAST, start="needed")


async def test_needed_starts_only_what_the_gates_need() -> None:
    controller, sup = make_controller(settings=NEEDED)
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    await asyncio.sleep(1)  # nothing follows in the background
    assert sorted(sup.starts()) == ["browser", "tigervnc"]
    assert result.programs[Program.BROWSER].ready
    await controller.ensure(frozenset({Gate.VNC}), 5)
    await asyncio.sleep(1)
    assert sorted(sup.starts()) == ["browser", "openbox", "tigervnc", "websocat"]
    assert sup.starts(Program.MCP_SERVER_BROWSER) == []


async def test_needed_a_caller_joining_a_start_brings_its_own_programs_into_it() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.4  # within the grace (0.5 s)
    controller, _ = make_controller(sup, settings=NEEDED)
    cdp = asyncio.ensure_future(controller.ensure(frozenset({Gate.CDP}), 5))
    await asyncio.sleep(0.1)
    assert controller.starting
    vnc = await controller.ensure(frozenset({Gate.VNC}), 5)
    # It did not wait for the browser's start to end first.
    assert not cdp.done()
    assert vnc.programs[Program.WEBSOCAT].ready and vnc.programs[Program.OPENBOX].ready
    assert (await cdp).programs[Program.BROWSER].ready
    assert sup.starts(Program.MCP_SERVER_BROWSER) == []


async def test_all_brings_the_rest_up_after_the_answer() -> None:
    controller, sup = make_controller()
    await controller.ensure(frozenset({Gate.CDP}), 5)
    await asyncio.sleep(1)
    assert sorted(sup.starts()) == sorted(PROGRAMS)


async def test_a_prewarm_returns_at_once_and_a_later_ensure_joins_its_start() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].ready_after_s = 0.5
    controller, _ = make_controller(sup, settings=NEEDED)
    controller.prewarm(frozenset({Gate.CDP}))
    assert sup.starts() == []  # nothing yet: it only began
    await asyncio.sleep(0.3)
    assert controller.starting
    result = await controller.ensure(frozenset({Gate.CDP}), 5)
    assert result.cold and result.joined
    assert sup.starts(Program.BROWSER) == ["browser"]
    await until(lambda: controller.last_start() is not None)
    assert controller.last_start()["ok"]  # type: ignore[index]


async def test_a_failed_prewarm_is_logged_and_kept_for_status(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].crash_on_start = True
    sup.programs[Program.BROWSER].stderr = "Missing X server or $DISPLAY"
    controller, _ = make_controller(sup, settings=NEEDED)
    controller.prewarm(frozenset({Gate.CDP}))
    await until(lambda: controller.last_start() is not None)
    last = controller.last_start()
    assert last is not None and last["ok"] is False
    assert last["error"]["program"] == "browser"
    assert last["error"]["stderr_tail"] == "Missing X server or $DISPLAY"
    await until(lambda: any("background start failed" in r.getMessage() for r in caplog.records))


# -- a supervisord that answers late (SIGSTOP, or a crowded machine) ----------------------


async def test_supervisord_answering_late_in_the_middle_of_a_start_only_delays_it() -> None:
    controller, sup = make_controller()
    ensure = asyncio.ensure_future(controller.ensure(ALL, 30))
    await until(lambda: bool(sup.starts()))
    sup.pause()  # longer than a call waits for its answer
    await asyncio.sleep(sup.call_timeout_s + 2)
    sup.carry_on()
    result = await ensure
    assert sup.late_answers > 0
    assert all(status.ready for status in result.programs.values())
    assert sorted(sup.starts()) == sorted(PROGRAMS)  # each spawned once
    await until(lambda: controller.last_start() is not None)
    assert controller.last_start()["ok"] is True  # type: ignore[index]


async def test_a_deadline_that_passes_while_supervisord_is_late_is_a_504_not_a_503() -> None:
    controller, sup = make_controller()
    sup.pause()
    with pytest.raises(ReadinessTimeout) as caught:
        await controller.ensure(ALL, 12)
    assert sup.late_answers >= 2  # asked again while the deadline lasted
    assert "did not answer" in caught.value.message
    sup.carry_on()
    result = await controller.ensure(ALL, 5)
    assert all(status.ready for status in result.programs.values())


async def test_the_rest_started_after_the_answer_survives_a_late_supervisord() -> None:
    # BROWSER_STACK_START=all: the rest comes up after the cdp answer, while
    # supervisord stops answering for longer than a call waits.
    sup = FakeSupervisor()
    sup.programs[Program.MCP_SERVER_BROWSER].ready_after_s = 0.3
    controller, _ = make_controller(sup)
    await controller.ensure(frozenset({Gate.CDP}), 5)
    sup.pause()
    await asyncio.sleep(sup.call_timeout_s * 2)
    sup.carry_on()
    await until(lambda: controller.last_start() is not None, 60)
    assert sup.late_answers > 0
    assert controller.last_start()["ok"] is True  # type: ignore[index]
    await controller.liveness.check()  # the passes of before the pause have grown old
    assert controller.model.ready(PROGRAMS)
    assert sorted(sup.starts()) == sorted(PROGRAMS)


async def test_a_late_answer_after_a_restart_does_not_replace_the_new_process() -> None:
    # The retry replaces the hung process; supervisord then answers late: the
    # read after it names the new process, which is probed, not replaced again.
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    sup.programs[Program.BROWSER].hung = True
    sup.programs[Program.BROWSER].restart_cures_hang = True
    await controller.liveness.check()
    ensure = asyncio.ensure_future(controller.ensure(frozenset({Gate.CDP}), 30))
    await until(lambda: len(sup.starts(Program.BROWSER)) == 2)
    sup.pause()
    await asyncio.sleep(sup.call_timeout_s + 2)
    sup.carry_on()
    result = await ensure
    assert sup.late_answers > 0
    assert result.programs[Program.BROWSER].ready
    assert len(sup.starts(Program.BROWSER)) == 2


# -- a program that keeps failing, in the background (BROWSER_STACK_START=all) -------------

CDP = frozenset({Gate.CDP})
# No staleness: these warm ensures answer from the model however long apart.
NO_LIVENESS = replace(FAST, liveness_interval_s=0)


def test_the_background_wait_doubles_after_each_failure_up_to_a_cap() -> None:
    waits = [delay_s(n) for n in range(1, 8)]
    assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, 300.0, 300.0]
    assert (FIRST_DELAY_S, MAX_DELAY_S) == (10.0, 300.0)


async def test_a_program_that_keeps_failing_is_not_tried_on_every_warm_ensure() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.WEBSOCAT].start_fault = Fault.NO_FILE  # its command is gone
    controller, _ = make_controller(sup, settings=NO_LIVENESS)
    await controller.ensure(CDP, 5)
    await until(lambda: controller.last_start() is not None)  # the rest failed on websocat
    for _ in range(20):  # 4 s of warm ensures, within the first wait
        assert (await controller.ensure(CDP, 5)).cold is False
        await asyncio.sleep(0.2)
    assert sup.starts(Program.WEBSOCAT) == ["websocat"]
    failing = controller.backoff()["websocat"]
    assert failing["failures"] == 1
    assert 0 < failing["retry_in_s"] <= FIRST_DELAY_S
    assert failing["error"]["error"] == "program_failed"
    # Once the wait has passed, a warm ensure tries it once more, and the next wait doubles.
    await asyncio.sleep(FIRST_DELAY_S)
    await controller.ensure(CDP, 5)
    await until(lambda: len(sup.starts(Program.WEBSOCAT)) == 2 and not controller.starting)
    assert controller.backoff()["websocat"]["failures"] == 2
    assert controller.backoff()["websocat"]["retry_in_s"] > FIRST_DELAY_S


async def test_an_ensure_that_needs_a_failing_program_tries_it_at_once_and_counts_afresh() -> None:
    sup = FakeSupervisor()
    sup.programs[Program.WEBSOCAT].start_fault = Fault.NO_FILE
    controller, _ = make_controller(sup, settings=NO_LIVENESS)
    await controller.ensure(CDP, 5)
    for _ in range(2):
        await until(lambda: not controller.starting)
        await asyncio.sleep(delay_s(controller.backoff()["websocat"]["failures"]))
        await controller.ensure(CDP, 5)
    await until(lambda: not controller.starting)
    assert controller.backoff()["websocat"]["failures"] == 3
    with pytest.raises(ProgramFailed):
        await controller.ensure(frozenset({Gate.VNC}), 5)
    assert len(sup.starts(Program.WEBSOCAT)) == 4
    await until(lambda: not controller.starting)
    assert controller.backoff()["websocat"]["failures"] == 1
    # Mended: the next background try brings it up, and nothing waits any more.
    sup.programs[Program.WEBSOCAT].start_fault = None
    await asyncio.sleep(FIRST_DELAY_S)
    await controller.ensure(CDP, 5)
    await until(lambda: controller.model.ready(PROGRAMS))
    await until(lambda: not controller.starting)
    assert controller.backoff() == {}


async def test_a_stop_of_all_during_an_idle_gate_s_stop_stops_all() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    sup.pause()  # the gate's stop is under way when the request comes
    chain = frozenset({Program.OPENBOX, Program.WEBSOCAT})
    gate_stop = asyncio.ensure_future(controller.stop("idle", chain))
    await asyncio.sleep(0.01)
    everything = asyncio.ensure_future(controller.stop())
    await asyncio.sleep(0.01)
    sup.carry_on()
    assert sorted((await gate_stop).stopped) == sorted(chain)
    assert sorted((await everything).stopped) == sorted(set(PROGRAMS) - chain)
    assert all(p.state == ProcessState.STOPPED for p in sup.programs.values())


async def test_a_stop_joins_one_under_way_that_covers_it() -> None:
    controller, sup = make_controller()
    await controller.ensure(ALL, 5)
    sup.pause()
    everything = asyncio.ensure_future(controller.stop())
    await asyncio.sleep(0.01)
    part = asyncio.ensure_future(controller.stop("idle", frozenset({Program.WEBSOCAT})))
    await asyncio.sleep(0.01)
    sup.carry_on()
    assert await part == await everything
    assert len([n for c, n in sup.calls if c == "stop" and n == "websocat"]) == 1
