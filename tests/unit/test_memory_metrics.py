from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from browser_stack import memory
from browser_stack.cli import EXIT_OK, main
from browser_stack.metrics import Metrics
from browser_stack.server import create_app
from browser_stack.stack import PROGRAMS, Program

from ..helpers import metric_value
from .fakes import FAST, FakeSupervisor, make_controller


def test_tree_memory_counts_the_whole_process_tree() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        tree = memory.process_tree(os.getpid())
        assert child.pid in {p.pid for p in tree}
        total = memory.tree_memory(tree)
        assert total.processes >= 2
        assert 0 < total.uss <= total.pss <= total.rss
    finally:
        child.kill()
        child.wait()
    assert memory.process_tree(0) == []
    assert memory.process_tree(child.pid) == []


def test_report_has_every_program_the_total_the_sidecar_and_says_why_no_cgroup() -> None:
    sample = memory.report({Program.BROWSER: os.getpid()}, {Program.BROWSER: "RUNNING"}, "up")
    assert sample["sample"] == "up"
    assert set(sample["programs"]) == set(PROGRAMS)
    assert sample["programs"]["browser"]["processes"] >= 1
    assert sample["programs"]["tigervnc"] == {
        "state": "UNKNOWN",
        "processes": 0,
        "uss_bytes": 0,
        "pss_bytes": 0,
        "rss_bytes": 0,
    }
    assert sample["total"]["uss_bytes"] == sample["programs"]["browser"]["uss_bytes"]
    assert sample["sidecar"]["processes"] == 1
    cgroup = sample["cgroup"]
    assert cgroup["available"] or "cgroup" in cgroup["reason"]


def test_cgroup_v2_figures_are_read_from_the_unified_hierarchy(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    group = root / "kubepods" / "pod1"
    group.mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu memory\n")
    (group / "memory.current").write_text(f"{300 * 1024 * 1024}\n")
    (group / "memory.stat").write_text(
        "anon 104857600\nfile 52428800\nshmem 1048576\ninactive_file 20971520\n"
    )
    proc = tmp_path / "cgroup-self"
    proc.write_text("0::/kubepods/pod1\n")
    got = memory.cgroup_memory(root, proc)
    assert got["available"] is True
    assert got["memory_current_bytes"] == 300 * 1024 * 1024
    assert got["anon_bytes"] == 104857600
    assert got["working_set_bytes"] == 300 * 1024 * 1024 - 20971520
    proc.write_text("4:memory:/x\n")
    assert memory.cgroup_memory(root, proc)["available"] is False


def _sample(name: str, browser_uss_mib: int, processes: int) -> dict[str, object]:
    mib = 1024 * 1024
    programs = {
        str(p): {"state": "STOPPED", "processes": 0, "uss_bytes": 0, "pss_bytes": 0, "rss_bytes": 0}
        for p in PROGRAMS
    }
    programs["browser"] = {
        "state": "RUNNING",
        "processes": processes,
        "uss_bytes": browser_uss_mib * mib,
        "pss_bytes": 2 * browser_uss_mib * mib,
        "rss_bytes": 4 * browser_uss_mib * mib,
    }
    return {
        "timestamp": "2026-11-22T06:00:00+00:00",
        "sample": name,
        "programs": programs,
        "total": {k: v for k, v in programs["browser"].items() if k != "state"},
        "sidecar": {
            "processes": 1,
            "uss_bytes": 20 * mib,
            "pss_bytes": 21 * mib,
            "rss_bytes": 30 * mib,
        },
        "cgroup": {"available": False, "reason": "no cgroup v2 hierarchy (cgroup v1 or none)"},
    }


def test_markdown_is_a_table_and_diff_shows_the_change() -> None:
    started = _sample("started", 197, 9)
    text = memory.markdown(started)
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert rows[0] == "| program | state | processes | USS MiB | PSS MiB | RSS MiB |"
    assert "| browser | RUNNING | 9 | 197.0 | 394.0 | 788.0 |" in rows
    assert "not available" in text
    change = memory.diff(_sample("stopped", 0, 0), started)
    assert "| browser | +9 | +197.0 | +394.0 | +788.0 |" in change
    assert "| **all five** | +9 | +197.0 |" in change


def test_memory_diff_cli_reads_two_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_sample("stopped", 0, 0)))
    b.write_text(json.dumps(_sample("started", 100, 8)))
    assert main(["memory", "diff", str(a), str(b)]) == EXIT_OK
    assert "| browser | +8 | +100.0 |" in capsys.readouterr().out
    assert main(["memory", "diff", str(a)]) == 2


@pytest.fixture
async def client() -> AsyncIterator[tuple[TestClient[object, object], Metrics, FakeSupervisor]]:
    metrics = Metrics()
    controller, sup = make_controller(observer=metrics)
    async with TestClient(TestServer(create_app(FAST, controller, metrics))) as c:
        yield c, metrics, sup


async def test_metrics_parse_and_move_with_calls(
    client: tuple[TestClient[object, object], Metrics, FakeSupervisor],
) -> None:
    c, _metrics, sup = client
    first = await (await c.get("/metrics")).text()
    assert metric_value(first, "browser_stack_program_state", program="browser") == 0
    await c.post("/v1/browser-stack/ensure")
    probes = "browser_stack_probes_total"
    cold = metric_value(
        await (await c.get("/metrics")).text(), probes, program="browser", purpose="start"
    )
    await c.post("/v1/browser-stack/ensure")
    warm = metric_value(
        await (await c.get("/metrics")).text(), probes, program="browser", purpose="start"
    )
    sup.programs[Program.BROWSER].ready_after_s = 1.0
    sup.kill(Program.BROWSER)
    await c.post("/v1/browser-stack/ensure", json={"needs": ["cdp"], "timeout_s": 0.05})
    text = await (await c.get("/metrics")).text()
    assert metric_value(text, "browser_stack_ensure_requests_total", outcome="cold") == 1
    assert metric_value(text, "browser_stack_ensure_requests_total", outcome="warm") == 1
    late = metric_value(text, "browser_stack_ensure_requests_total", outcome="readiness_timeout")
    assert late == 1
    assert metric_value(text, "browser_stack_program_exits_total", program="browser") == 1
    assert warm == cold  # the warm ensure asked nothing
    assert metric_value(text, probes, program="browser", purpose="start") > cold
    assert metric_value(text, "browser_stack_cold_starts_total") == 2
    assert metric_value(text, "browser_stack_start_duration_seconds_count", program="stack") == 1
    assert metric_value(text, "browser_stack_start_duration_seconds_count", program="browser") == 1
    assert metric_value(text, "browser_stack_program_state", program="tigervnc") == 20
    assert metric_value(text, "browser_stack_program_ready", program="browser") == 0
    await c.post("/v1/browser-stack/stop")
    text = await (await c.get("/metrics")).text()
    assert metric_value(text, "browser_stack_stops_total", reason="request") == 1


async def test_status_text_and_memory_endpoint(
    client: tuple[TestClient[object, object], Metrics, FakeSupervisor],
) -> None:
    c, _metrics, _sup = client
    text = await (await c.get("/v1/browser-stack/status?format=text")).text()
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["tigervnc", "STOPPED", "not"]
    assert len(lines) == len(PROGRAMS) + 2
    assert lines[-2:] == ["mode: eager (no switch set)", "idle stop: off (eager mode's default)"]
    bad = await c.get("/v1/browser-stack/status?format=xml")
    assert bad.status == 400
    sample = await (await c.get("/v1/browser-stack/memory?sample=before")).json()
    assert sample["sample"] == "before"
    assert all(p["processes"] == 0 for p in sample["programs"].values())
    md = await (await c.get("/v1/browser-stack/memory?format=markdown")).text()
    assert "| program | state |" in md


async def test_ensure_joined_is_counted() -> None:
    import asyncio

    metrics = Metrics()
    controller, _sup = make_controller(observer=metrics)
    await asyncio.gather(*(controller.ensure(frozenset({_gate()}), 5) for _ in range(10)))
    text = metrics.render().decode()
    assert metric_value(text, "browser_stack_ensure_joined_total") >= 1


def _gate():  # type: ignore[no-untyped-def]
    from browser_stack.stack import Gate

    return Gate.CDP
