"""The fault matrix: each fault the stack meets in the wild, on the real stack.

Every test ends with the stack stopped, as the other e2e modules expect. The
tests drive a sidecar of this module's own, with a short readiness grace, in
place of the stack's (one sidecar controls a supervisord): started outside
supervisord, it can be killed, restarted or cut off from supervisord without
taking the stack down.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from ..helpers import Sidecar, wait_for
from .conftest import (
    PROGRAMS,
    Stack,
    main_pid,
    rpc,
    sidecar_in_place,
    spawn_count,
    stop_stack,
    stop_stacks_sidecar,
)


@pytest.fixture(scope="module")
def sidecar(stack: Stack) -> Iterator[Sidecar]:
    with sidecar_in_place(stack) as running:
        yield running


@pytest.fixture(autouse=True)
def stopped_before_and_after(stack: Stack, sidecar: Sidecar) -> Iterator[None]:
    # Each test starts from a stopped stack, whatever ran before it (another
    # module's tests may leave it up), and leaves it stopped. The stop also
    # cancels a start still running in the background (an ensure for one gate
    # leaves the rest coming up).
    stop_stack(stack)
    yield
    stop_stack(stack)


def state_of(stack: Stack, name: str) -> str:
    return str(rpc(stack, "getProcessInfo", name)["statename"])


def cdp_answers(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/json/version", timeout=2) as r:
            return "webSocketDebuggerUrl" in json.loads(r.read())
    except OSError:
        return False


def spawn_counts(stack: Stack) -> dict[str, int]:
    return {name: spawn_count(stack, name) for name in PROGRAMS}


def x_lock() -> Path:
    # The stack's Xvnc serves DISPLAY from this environment (default :99).
    number = os.environ.get("DISPLAY", ":99").split(":")[1].split(".")[0]
    return Path(f"/tmp/.X{number}-lock")


# 1 ------------------------------------------------------------------------------------


def test_01_program_in_backoff_or_fatal_is_stopped_and_started_again(
    stack: Stack, sidecar: Sidecar
) -> None:
    # Chromium started with no X display exits at once: supervisord retries it
    # (BACKOFF) and gives up (FATAL), the state a crash loop leaves behind.
    rpc(stack, "startProcess", "browser", False)
    wait_for(lambda: state_of(stack, "browser") in ("BACKOFF", "FATAL"), what="BACKOFF")
    status, out = sidecar.ensure({"needs": ["cdp"]})
    assert status == 200, out
    assert out["programs"]["browser"]["ready"] is True
    assert cdp_answers(out["endpoints"]["cdp"])


def test_01_crash_loop_ends_in_502_with_state_spawnerr_and_stderr_tail(
    stack: Stack, sidecar: Sidecar
) -> None:
    # A Chromium that aborts right after every spawn (SIGABRT, as in the wild).
    done = threading.Event()

    def abort_every_browser() -> None:
        while not done.is_set():
            with contextlib.suppress(Exception):
                pid = main_pid(stack, "browser")
                if pid:
                    os.kill(pid, signal.SIGABRT)
            time.sleep(0.005)

    killer = threading.Thread(target=abort_every_browser, daemon=True)
    killer.start()
    try:
        status, out = sidecar.ensure({"needs": ["cdp"]})
    finally:
        done.set()
        killer.join()
    assert status == 502, out
    assert out["error"] == "program_failed"
    assert out["program"] == "browser"
    assert out["state"] in ("BACKOFF", "EXITED", "FATAL")
    assert "spawnerr" in out
    assert out["stderr_tail"], out
    # Once the crashes stop, the same sidecar brings it up.
    status, out = sidecar.ensure({"needs": ["cdp"]})
    assert status == 200, out


# 2 ------------------------------------------------------------------------------------


def test_02_stale_x_lock_naming_a_live_non_x_process_is_removed(
    stack: Stack, sidecar: Sidecar
) -> None:
    lock = x_lock()
    squatter = subprocess.Popen(["sleep", "60"])  # the pid a container restart reused
    try:
        lock.write_text(f"{squatter.pid:>10}\n")
        status, out = sidecar.ensure({"needs": ["vnc"]})
        assert status == 200, out
        assert out["programs"]["tigervnc"]["ready"] is True
        assert int(lock.read_text().strip()) == main_pid(stack, "tigervnc")
    finally:
        squatter.kill()
        squatter.wait()


def test_02_lock_of_a_live_x_server_is_never_touched(stack: Stack, sidecar: Sidecar) -> None:
    lock = x_lock()
    fake_x = stack.root / "Xvfb"  # a live process the kernel calls Xvfb
    fake_x.unlink(missing_ok=True)
    fake_x.symlink_to(shutil.which("sleep") or "/bin/sleep")
    server = subprocess.Popen([str(fake_x), "60"])
    try:
        lock.write_text(f"{server.pid:>10}\n")
        status, out = sidecar.ensure({"needs": ["vnc"]})
        assert status == 502, out
        assert out["error"] == "port_in_use"
        assert out["pid"] == server.pid
        assert lock.exists() and int(lock.read_text().strip()) == server.pid
    finally:
        server.kill()
        server.wait()
        lock.unlink(missing_ok=True)


# 3 ------------------------------------------------------------------------------------


def test_03_running_but_cdp_dead_is_restarted_with_its_users_after_the_grace(
    stack: Stack, sidecar: Sidecar
) -> None:
    status, out = sidecar.ensure()
    assert status == 200, out
    hung_pid = main_pid(stack, "browser")
    mcp_pid = main_pid(stack, "mcp-server-browser")
    os.kill(hung_pid, signal.SIGSTOP)  # Chromium hangs: supervisord still says RUNNING
    try:
        assert not cdp_answers(out["endpoints"]["cdp"])
        assert state_of(stack, "browser") in ("STARTING", "RUNNING")
        # A hang shows only to a liveness check (every 2 s): then it is not ready.
        wait_for(
            lambda: "not ready program=browser: liveness check failed" in sidecar.read_output(),
            what="the liveness failure",
        )
        status, out = sidecar.ensure({"needs": ["mcp"]})
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung_pid, signal.SIGCONT)
    assert status == 200, out
    assert main_pid(stack, "browser") != hung_pid
    assert main_pid(stack, "mcp-server-browser") != mcp_pid
    assert cdp_answers(out["endpoints"]["cdp"])


# 4 ------------------------------------------------------------------------------------


def test_04_program_that_died_after_ready_shows_in_status_and_is_brought_back(
    stack: Stack, sidecar: Sidecar
) -> None:
    status, out = sidecar.ensure()  # all five: no start left running behind it
    assert status == 200, out
    endpoint = out["endpoints"]["cdp"]
    rpc(stack, "stopProcess", "browser", True)  # died behind the sidecar's back
    programs = sidecar.status().body["programs"]
    assert programs["browser"]["ready"] is False
    assert programs["browser"]["state"] == "STOPPED"
    status, out = sidecar.ensure({"needs": ["cdp"]})
    assert status == 200, out
    assert out["cold"] is True
    assert out["started"] == ["browser"]
    # ready: true was answered only with CDP answering.
    assert cdp_answers(endpoint)


@pytest.mark.parametrize("program", PROGRAMS)
def test_04_each_exit_is_seen_with_no_request_and_one_ensure_brings_it_back(
    stack: Stack, sidecar: Sidecar, program: str
) -> None:
    status, out = sidecar.ensure()
    assert status == 200, out
    pid = main_pid(stack, program)
    os.kill(pid, signal.SIGKILL)  # supervisord restarts it (Xvnc's clients may follow)
    # Known from the exit itself (a pidfd), with no request in between, and
    # logged with how it ended.
    # Where the kernel could not say at once how it ended, supervisord's log does.
    killed = (
        f"exited program={program} pid={pid}: terminated by SIGKILL",
        f"ended program={program} pid={pid}: terminated by SIGKILL",
    )
    wait_for(
        lambda: any(line in sidecar.read_output() for line in killed), what="the exit's log line"
    )
    exits = sidecar.request("GET", "/metrics").body
    assert f'browser_stack_program_exits_total{{program="{program}"}}' in exits
    status, out = sidecar.ensure()
    assert status == 200, out
    assert all(p["ready"] for p in out["programs"].values()), out["programs"]
    assert out["programs"][program]["pid"] not in (0, pid)
    assert cdp_answers(out["endpoints"]["cdp"])


# 5 ------------------------------------------------------------------------------------


def test_05_port_held_by_a_foreign_process_is_named_with_its_pid(
    stack: Stack, sidecar: Sidecar
) -> None:
    port = int(sidecar.status().body["endpoints"]["cdp"].rsplit(":", 1)[1])
    squatter = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: cdp_port_listens(port), what=f"squatter on {port}")
        began = time.monotonic()
        status, out = sidecar.ensure({"needs": ["cdp"], "timeout_s": 30})
        waited = time.monotonic() - began
        assert status == 502, out
        assert out["error"] == "port_in_use"
        assert out["port"] == port
        assert out["pid"] == squatter.pid
        assert f"port {port}" in out["message"]
        print(f"port_in_use answered after {waited:.2f} s")
    finally:
        squatter.kill()
        squatter.wait()
    status, out = sidecar.ensure({"needs": ["cdp"]})
    assert status == 200, out


def cdp_port_listens(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


# 6 ------------------------------------------------------------------------------------


def test_06_supervisord_unreachable_is_503_with_retry_after_then_recovers(
    stack: Stack, sidecar: Sidecar
) -> None:
    sock = stack.root / "supervisor.sock"
    hidden = stack.root / "supervisor.sock.hidden"
    sock.rename(hidden)
    try:
        answer = sidecar.ensure({})
        assert answer.status == 503, answer.body
        assert answer.body["error"] == "supervisor_unavailable"
        assert answer.headers["retry-after"] == "2"
        assert sidecar.healthz().body["supervisor"]["reachable"] is False
        assert sidecar.readyz().status == 503
    finally:
        hidden.rename(sock)
    pid = sidecar.pid
    status, out = sidecar.ensure({"needs": ["cdp"]})
    assert status == 200, out
    assert sidecar.pid == pid and sidecar.alive()


def test_06_supervisord_restarting_is_survived_without_restarting_the_sidecar(
    stack: Stack, sidecar: Sidecar
) -> None:
    rpc(stack, "restart")  # supervisord stops everything, rereads, starts again
    answers = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, out = sidecar.ensure({})
        answers.append(status)
        if status == 200:
            break
        assert status in (502, 503), out  # restarting: unreachable or shutting down
        time.sleep(0.2)
    assert answers[-1] == 200, answers
    assert sidecar.alive()
    # supervisord started the stack's own sidecar again with the rest: stop it,
    # or it takes this module's address the next time this one restarts.
    stop_stacks_sidecar(stack)


# 7 ------------------------------------------------------------------------------------


def test_07_sidecar_restarted_mid_start_and_after_starts_nothing_twice(
    stack: Stack, sidecar: Sidecar
) -> None:
    before = spawn_counts(stack)

    def call_and_lose_the_answer() -> None:
        with contextlib.suppress(OSError):  # the sidecar dies under this call
            sidecar.ensure()

    caller = threading.Thread(target=call_and_lose_the_answer, daemon=True)
    caller.start()
    wait_for(lambda: spawn_count(stack, "tigervnc") > before["tigervnc"], what="a start")
    sidecar.kill()  # gone in the middle of the start
    caller.join(10)
    sidecar.start()  # a new process, nothing kept but what supervisord knows
    status, out = sidecar.ensure()
    assert status == 200, out
    after = spawn_counts(stack)
    assert {n: after[n] - before[n] for n in PROGRAMS} == dict.fromkeys(PROGRAMS, 1)
    # And a sidecar restarted with the stack up finds it warm.
    sidecar.kill()
    sidecar.start()
    status, out = sidecar.ensure()
    assert status == 200, out
    assert out["cold"] is False
    assert out["started"] == []
    assert spawn_counts(stack) == after


# 8 ------------------------------------------------------------------------------------


def test_08_stop_during_ensure_answers_409_to_the_waiting_caller(
    stack: Stack, sidecar: Sidecar
) -> None:
    answer: dict[str, Any] = {}

    def call_ensure() -> None:
        answer["status"], answer["body"] = sidecar.ensure({"needs": ["cdp"]})

    caller = threading.Thread(target=call_ensure)
    before = spawn_count(stack, "tigervnc")
    caller.start()
    wait_for(lambda: spawn_count(stack, "tigervnc") > before, what="the start to begin")
    stopped = sidecar.stop().body
    caller.join(30)
    assert stopped["cancelled_start"] is True
    assert answer["status"] == 409, answer
    assert answer["body"]["error"] == "stopped"
    assert all(p["state"] == "STOPPED" for p in sidecar.status().body["programs"].values())


def test_08_ensure_during_stop_waits_for_the_stop_then_starts(
    stack: Stack, sidecar: Sidecar
) -> None:
    status, out = sidecar.ensure()
    assert status == 200, out
    stopper = threading.Thread(target=sidecar.stop)
    stopper.start()
    wait_for(lambda: state_of(stack, "websocat") != "RUNNING", what="the stop to begin")
    status, out = sidecar.ensure()
    stopper.join(30)
    assert status == 200, out
    assert all(p["ready"] for p in out["programs"].values())


# 9 ------------------------------------------------------------------------------------


def test_09_thousand_concurrent_ensures_on_a_cold_stack(stack: Stack, sidecar: Sidecar) -> None:
    import aiohttp
    from aiohttp import web

    from browser_stack.config import Settings
    from browser_stack.server import create_app

    env = {**os.environ, "SUPERVISOR_SERVER_URL": f"unix://{stack.root}/supervisor.sock"}
    settings = Settings.from_env(env)
    before = spawn_counts(stack)
    me = psutil.Process()
    sidecar.kill()  # the sidecar here, in this process, controls the stack instead

    async def run() -> tuple[list[int], float, int, int, int, int, int]:
        tasks_before = len(asyncio.all_tasks())
        fds_before = me.num_fds()
        runner = web.AppRunner(create_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        began = time.monotonic()
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def one() -> int:
                async with session.post(
                    f"http://127.0.0.1:{port}/v1/browser-stack/ensure",
                    json={"timeout_s": 60},
                    timeout=aiohttp.ClientTimeout(total=120),
                ) as r:
                    await r.read()
                    return r.status

            statuses = await asyncio.gather(*(one() for _ in range(1000)))
        wall = time.monotonic() - began
        await asyncio.sleep(0.2)
        # The clients are gone: no connection to the sidecar may stay open.
        still_open = sum(
            1
            for c in me.net_connections(kind="tcp")
            if c.laddr and c.laddr.port == port and c.status == psutil.CONN_ESTABLISHED
        )
        await runner.cleanup()
        # Every task and socket the sidecar made ends with it.
        tasks_after = len(asyncio.all_tasks())
        fds_after = me.num_fds()
        return statuses, wall, tasks_before, tasks_after, fds_before, fds_after, still_open

    try:
        statuses, wall, tasks_before, tasks_after, fds_before, fds_after, still_open = asyncio.run(
            run()
        )
    finally:
        sidecar.start()
    after = spawn_counts(stack)
    starts = {n: after[n] - before[n] for n in PROGRAMS}
    print(f"1000 concurrent ensures: wall {wall:.2f} s, spawns {starts}, statuses {set(statuses)}")
    assert statuses == [200] * 1000
    assert starts == dict.fromkeys(PROGRAMS, 1)
    assert still_open == 0
    assert tasks_after == tasks_before
    assert fds_after == fds_before


# 10 -----------------------------------------------------------------------------------


def browser_tree(stack: Stack) -> set[int]:
    return {int(line.split()[0]) for line in stack.chromium_processes()}


def test_10_no_process_of_the_five_remains_after_a_crash_or_a_stop(
    stack: Stack, sidecar: Sidecar
) -> None:
    status, out = sidecar.ensure()
    assert status == 200, out
    old_tree = browser_tree(stack)
    assert len(old_tree) > 1  # Chromium and its children
    os.kill(main_pid(stack, "browser"), signal.SIGKILL)  # a crash of the browser process

    def old_tree_gone() -> bool:
        return not (old_tree & browser_tree(stack))

    wait_for(old_tree_gone, timeout=10, what="the crashed browser's children to exit")
    status, out = sidecar.ensure()
    assert status == 200, out
    assert sidecar.stop().status == 200

    def only_supervisord_and_sidecar_left() -> bool:
        return all(
            p.pid == main_supervisord(stack) or "browser_stack" in " ".join(p.cmdline())
            for p in stack.processes()
        )

    wait_for(only_supervisord_and_sidecar_left, timeout=5, what="no process of the five")


def main_supervisord(stack: Stack) -> int:
    return int((stack.root / "supervisord.pid").read_text().strip())


# 11 -----------------------------------------------------------------------------------


def test_11_supervisord_answering_late_mid_start_is_waited_for_not_failed(
    stack: Stack, sidecar: Sidecar
) -> None:
    # It answered 503 supervisor_unavailable, with every program on its way up.
    from browser_stack.supervisor import CALL_TIMEOUT_S

    answer: dict[str, Any] = {}
    logged = len(sidecar.read_output())

    def call_ensure() -> None:
        answer["status"], answer["body"] = sidecar.ensure({}, timeout=120)

    caller = threading.Thread(target=call_ensure)
    before = spawn_count(stack, "tigervnc")
    caller.start()
    wait_for(lambda: spawn_count(stack, "tigervnc") > before, what="the start to begin")
    supervisord = main_supervisord(stack)
    os.kill(supervisord, signal.SIGSTOP)  # there, connected, and not answering
    try:
        time.sleep(CALL_TIMEOUT_S + 2)  # longer than one call waits for its answer
    finally:
        os.kill(supervisord, signal.SIGCONT)
    caller.join(120)
    assert answer.get("status") == 200, answer
    assert all(p["ready"] for p in answer["body"]["programs"].values()), answer["body"]
    assert cdp_answers(answer["body"]["endpoints"]["cdp"])
    wait_for(lambda: not sidecar.status().body["starting"], what="the start to end")
    last = sidecar.status().body["last_start"]
    assert last["ok"] is True, last
    output = sidecar.read_output()[logged:]
    assert "did not answer" in output  # the pause outlasted a call
    assert "start failed" not in output
