"""`python -m bench.fleet --engine podman`, small: two lazy containers of the tier's image go
through every phase, with memory read from each container's cgroup, and nothing is
left behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .conftest import containers

REPO = Path(__file__).resolve().parents[2]


def test_the_fleet_bench_in_containers(image: str, tmp_path: Path) -> None:
    out = tmp_path / "fleet.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.fleet",
            "--engine",
            "podman",
            "--image",
            image,
            "--memory-limit",
            "1536m",
            "--mode",
            "lazy",
            "--sandboxes",
            "2",
            "--concurrent",
            "2",
            "--rounds",
            "1",
            "--settle",
            "1",
            "--idle-timeout",
            "3",
            "--json",
            str(out),
            "--plot",
            str(tmp_path / "fleet.png"),
            "--workdir",
            str(tmp_path / "work"),
        ],
        env=containers.engine_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lazy = json.loads(out.read_text())["modes"]["lazy"]
    assert lazy["boot_ready_s"]["count"] == 2, lazy["boot_ready_s"]
    assert lazy["memory_cgroup"] in ("v1", "v2")
    idle = lazy["idle_mib_per_sandbox"]
    assert idle["cgroup_usage"]["min"] > 0 and idle["pss"]["min"] > 0, idle
    assert lazy["browser_ready_s"]["2"]["errors"] == 0, lazy["browser_ready_s"]["2"]
    assert lazy["release"]["not_stopped"] == []
    assert lazy["left_behind"] == []
    left = containers.podman("ps", "-a", "--format", "{{.Names}}", "--filter", "name=bstest-fleet")
    assert left.stdout.strip() == ""
