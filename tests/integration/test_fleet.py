"""bench/fleet.py's machinery with N = 2 and stand-in programs.

Each sandbox is its own network, mount and PID namespace with a private /tmp and a
memory cgroup, running a real supervisord with the shipped sidecar file and a
programs file of stand-ins (standin.py) written with the same variables as
supervisord.d/browser-stack-programs.conf. What is covered: both sandboxes use the
same ports on their own loopback, their X sockets live in their own /tmp, memory is
read per sandbox, lazy and eager boots, a whole bench run through the CLI, and that
nothing is left behind after a clean exit, an exception or Ctrl-C.

Skipped only where the machine cannot create namespaces (not root, no ip/unshare).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import fleet

from .conftest import (
    DEFAULT_DELAYS,
    DEFAULT_MODES,
    PROGRAMS,
    SIDECAR_TIMEOUTS,
    STANDIN,
    wait_for,
)

REPO = Path(__file__).resolve().parents[2]
PORT_VARS = {
    "tigervnc": "BROWSER_STACK_PROGRAM_VNC_PORT",
    "browser": "BROWSER_STACK_PROGRAM_CDP_PORT",
    "mcp-server-browser": "BROWSER_STACK_PROGRAM_MCP_PORT",
    "websocat": "BROWSER_STACK_PROGRAM_WS_PORT",
}


fs = fleet.fs
# The host's device of each directory a sandbox gets a private copy of, where it exists.
HOST_DIRS = {d: os.stat(d).st_dev for d in fs.PRIVATE_DIRS if os.path.isdir(d)}


def write_standin_programs(path: Path) -> Path:
    """The five as stand-ins, read from the variables the entrypoint exports
    (AUTOSTART_BROWSER_STACK, DISPLAY, BROWSER_STACK_PROGRAM_*_PORT,
    BROWSER_STACK_LOG_DIR), with their X socket and marker in the sandbox's /tmp."""
    parts = ["; stand-ins for tests/integration/test_fleet.py\n"]
    for program in PROGRAMS:
        port = f" --port %(ENV_{PORT_VARS[program]})s" if program in PORT_VARS else ""
        parts.append(
            f"""
[program:{program}]
command={sys.executable} {STANDIN} {DEFAULT_MODES[program]}
    --program {program} --delay {DEFAULT_DELAYS.get(program, 0.0)}{port}
    --x11-dir /tmp/.X11-unix --display %(ENV_DISPLAY)s --marker /tmp/wm-marker
    --starts-log %(ENV_BROWSER_STACK_LOG_DIR)s/starts.log
autostart=%(ENV_AUTOSTART_BROWSER_STACK)s
autorestart=true
startsecs=1
startretries=3
stopsignal=TERM
stopwaitsecs=5
stopasgroup=true
killasgroup=true
stdout_logfile=%(ENV_BROWSER_STACK_LOG_DIR)s/{program}.out.log
stderr_logfile=%(ENV_BROWSER_STACK_LOG_DIR)s/{program}.err.log
"""
        )
    path.write_text("".join(parts), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def namespaces() -> None:
    why = fs.tools_missing()
    if why:
        pytest.skip(f"this machine cannot create the fleet's namespaces: {why}")


@pytest.fixture
def workdir(namespaces: None) -> Iterator[Path]:
    # Not under /tmp: every sandbox mounts its own /tmp over the host's.
    path = Path(tempfile.mkdtemp(prefix="bs-fleet-test-", dir="/var/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def standins(workdir: Path) -> Path:
    return write_standin_programs(workdir / "standin-programs.conf")


def start_events_total(sandbox: object) -> dict[str, int]:
    return dict(fleet.start_events(sandbox, fleet.LogMarks(0, 0))["spawned"])


async def test_two_lazy_sandboxes_share_ports_each_on_its_own_loopback_and_tmp(
    workdir: Path, standins: Path
) -> None:
    with fs.Fleet(
        2, lazy=True, workdir=workdir / "lazy", programs_conf=standins, env=SIDECAR_TIMEOUTS
    ) as fl:
        tag = fl.tag
        assert sorted(s.netns for s in fl.sandboxes) == [f"bsfleet-{tag}-0", f"bsfleet-{tag}-1"]
        assert set(fs.netns_names()) >= {s.netns for s in fl.sandboxes}
        fl.start_all()
        sessions = {s.index: fleet.session_for(s) for s in fl.sandboxes}
        try:
            boots = await asyncio.gather(
                *(fleet.wait_booted(s, sessions[s.index], True, 60) for s in fl.sandboxes)
            )
            assert all(b["ready_s"] is not None for b in boots), boots
            # Lazy: none of the five started at boot.
            assert all(start_events_total(s) == {"browser-stack": 1} for s in fl.sandboxes)
            # Both sidecars on 127.0.0.1:8110, both stand-in browsers on 9222: each
            # sandbox has its own loopback. K = 2 at the same moment.
            answers = await asyncio.gather(*(fleet.ensure_cdp(h) for h in sessions.values()))
            assert [a["status"] for a in answers] == [200, 200], answers
            assert all(a["cold"] for a in answers)
            for sandbox in fl.sandboxes:
                wait_for(lambda s=sandbox: s.inside("/tmp/.X11-unix/X99").exists(), 10, "X99")
            # Each /tmp is a tmpfs of its own, not the host's /tmp.
            devices = {s.inside("/tmp").stat().st_dev for s in fl.sandboxes}
            assert len(devices) == 2 and os.stat("/tmp").st_dev not in devices
            # So is each directory the five write to outside /tmp (Xvnc's keymap).
            for shared in [d for d in fs.PRIVATE_DIRS if d in HOST_DIRS]:
                devices = {s.inside(shared).stat().st_dev for s in fl.sandboxes}
                assert len(devices) == 2 and HOST_DIRS[shared] not in devices
            for sandbox in fl.sandboxes:
                sample = fl.memory(sandbox)
                # supervisord, the sidecar and the stand-ins started for cdp at least
                assert sample["processes"] >= 4 and sample["pss_bytes"] > 0, sample
                if fl.cgroups.kind:
                    assert sample["cgroup"]["usage_bytes"] > 0
                    assert set(sandbox.pids()) == set(fs.cgroup_procs(sandbox.cgroup))
        finally:
            for http in sessions.values():
                await http.close()
    assert fs.leftovers(tag) == []
    assert not (Path("/run/netns") / f"bsfleet-{tag}-0").exists()


async def test_eager_sandboxes_boot_with_all_five_ready(workdir: Path, standins: Path) -> None:
    with fs.Fleet(
        2, lazy=False, workdir=workdir / "eager", programs_conf=standins, env=SIDECAR_TIMEOUTS
    ) as fl:
        tag = fl.tag
        fl.start_all()
        sessions = {s.index: fleet.session_for(s) for s in fl.sandboxes}
        try:
            boots = await asyncio.gather(
                *(fleet.wait_booted(s, sessions[s.index], False, 60) for s in fl.sandboxes)
            )
        finally:
            for http in sessions.values():
                await http.close()
        assert all(b["ready_s"] is not None for b in boots), boots
        for sandbox in fl.sandboxes:
            spawned = start_events_total(sandbox)
            assert set(spawned) == {"browser-stack", *PROGRAMS}, spawned
    assert fs.leftovers(tag) == []


def test_an_exception_inside_the_fleet_leaves_nothing_behind(workdir: Path, standins: Path) -> None:
    with (
        pytest.raises(RuntimeError, match="failed on purpose"),
        fs.Fleet(2, lazy=False, workdir=workdir / "x", programs_conf=standins) as fl,
    ):
        tag = fl.tag
        fl.start_all()
        # All five stand-ins running (each logs its start first thing).
        wait_for(lambda: all(started(s) == 5 for s in fl.sandboxes), 30, "the stand-ins")
        raise RuntimeError("failed on purpose")
    assert fs.leftovers(tag) == []


def started(sandbox: object) -> int:
    log = sandbox.log_dir / "starts.log"  # type: ignore[attr-defined]
    return len(log.read_text().splitlines()) if log.exists() else 0


def bench_command(workdir: Path, standins: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench.fleet",
        "--sandboxes",
        "2",
        "--programs-conf",
        str(standins),
        "--workdir",
        str(workdir / "run"),
        *(f"--sidecar-env={k}={v}" for k, v in SIDECAR_TIMEOUTS.items()),
        *extra,
    ]


def test_the_bench_runs_both_modes_and_writes_its_figures(workdir: Path, standins: Path) -> None:
    out = workdir / "fleet.json"
    png = workdir / "fleet.png"
    command = bench_command(
        workdir,
        standins,
        "--mode=both",
        "--start=needed,all",
        "--concurrent=1,N",
        "--rounds=1",
        "--settle=0.5",
        "--pause=0.5",
        "--idle-timeout=2",
        f"--json={out}",
        f"--plot={png}",
    )
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert list(data["modes"]) == ["lazy-needed", "lazy-all", "eager"]
    lazy, eager = data["modes"]["lazy-needed"], data["modes"]["eager"]
    for mode in data["modes"].values():
        assert mode["left_behind"] == []
        assert mode["boot_ready_s"]["count"] == 2 and not mode["boot_ready_s"]["failures"]
        assert mode["boot_ready_s"]["max"] >= mode["boot_ready_s"]["p50"] > 0
        assert mode["idle_mib_per_sandbox"]["pss"]["count"] == 2
    for start in ("needed", "all"):
        phase = data["modes"][f"lazy-{start}"]
        assert phase["start"] == start
        assert set(phase["browser_ready_s"]) == {"1", "2"}
        for k, figures in phase["browser_ready_s"].items():
            assert figures["count"] == int(k) and figures["errors"] == 0, figures["error_details"]
            # The K starts' CPU, and the bound it sets: no makespan below it.
            cpu = figures["cpu"]
            assert cpu["cores"] >= 1 and len(cpu["rounds"]) == 1
            assert 0 < cpu["answers"]["cpu_s"] <= cpu["stack"]["cpu_s"]
            assert abs(cpu["stack"]["bound_s"] - cpu["stack"]["cpu_s"] / cpu["cores"]) <= 0.01
        assert phase["release"]["not_stopped"] == []
    assert "needed_over_all_ensure_p50_k2" in data["ratios"]
    assert "### The K starts against the machine's CPU" in result.stdout
    assert "lazy-all K=2: ensure p50 " in result.stdout  # the closing note, a line per K
    assert "browser_ready_s" not in eager
    # Lazy idle is the sidecar and supervisord; eager holds the five stand-ins too.
    assert lazy["idle_mib_per_sandbox"]["pss"]["avg"] < eager["idle_mib_per_sandbox"]["pss"]["avg"]
    assert data["ratios"]["idle_per_sandbox_lazy_over_eager_pss"] < 1
    assert "### Capacity at idle" in result.stdout and "### Startup" in result.stdout
    assert png.stat().st_size > 0


def test_ctrl_c_removes_every_sandbox(workdir: Path, standins: Path) -> None:
    command = bench_command(workdir, standins, "--mode=lazy", "--settle=120", "--boot-timeout=60")
    seen = []
    pipe = subprocess.PIPE
    # Without matplotlib (the dev extras) the bench says so before it boots
    # anything, and runs without the plot: a long run must not end in a traceback.
    hidden = workdir / "no-matplotlib" / "matplotlib"
    hidden.mkdir(parents=True)
    (hidden / "__init__.py").write_text("raise ImportError('hidden', name='matplotlib')\n")
    env = {**os.environ, "PYTHONPATH": str(hidden.parent)}
    # The with closes the pipe whatever fails inside.
    # Ctrl-C reaches a terminal's foreground job, whose SIGINT is not ignored; a test
    # run started in the background (`cmd &` in a shell without job control) inherits
    # SIG_IGN, so the bench gets the default disposition back here.
    with subprocess.Popen(
        command,
        stdout=pipe,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as proc:
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                seen.append(line)
                if "lazy: booted" in line:
                    break
            assert any("booted 2/2" in line for line in seen), "".join(seen)
            assert "fleet: no plot: matplotlib is not installed" in seen[0], "".join(seen)
            tag = str(proc.pid)
            assert len([n for n in fs.netns_names() if n.startswith(f"bsfleet-{tag}-")]) == 2
            proc.send_signal(signal.SIGINT)
            rest, _ = proc.communicate(timeout=90)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, "".join(seen) + rest
    assert fs.leftovers(tag) == []


def test_a_checkout_under_tmp_stays_visible_inside_a_sandbox(namespaces: None) -> None:
    # CI may clone the repo under /tmp, which each sandbox covers with its own tmpfs.
    with tempfile.TemporaryDirectory(prefix="bs-fleet-keep-", dir="/tmp") as host_dir:
        kept = Path(host_dir) / "checkout"
        (kept / "bin").mkdir(parents=True)
        (kept / "bin" / "entry").write_text("kept\n")
        (Path(host_dir) / "not-kept").write_text("host only\n")
        keep = fs.outside_tmp([kept, kept / "bin", Path("/usr")])
        assert keep == [kept.resolve()]
        script = f"cat {kept}/bin/entry; ls /tmp; [ -e {host_dir}/not-kept ] || echo private"
        unshare = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork"]
        unshare += ["--mount-proc", "--"]
        result = subprocess.run(
            [*unshare, "sh", "-c", fs.sandbox_init(keep), "sandbox-init", "sh", "-c", script],
            env={"PATH": os.environ["PATH"], "HOME": "/tmp/home"},
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    # The checkout is there; the rest of the host's /tmp is not; HOME was made.
    assert lines[0] == "kept" and lines[-1] == "private", result.stdout
    assert set(lines[1:-1]) == {Path(host_dir).name, "home"}, result.stdout
