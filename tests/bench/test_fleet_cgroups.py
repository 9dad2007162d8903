"""bench/fleet_sandbox.py's choice of memory cgroup, on a hand-made cgroup tree.

This machine has cgroup v1 only (the integration test covers it for real); the v2
path, what a Kubernetes node has today, is covered here: which hierarchy is chosen,
what is written to delegate the memory controller, and how the figures are read.
"""

from __future__ import annotations

from pathlib import Path

from bench import fleet_sandbox as fs


def v2_tree(root: Path, own: str = "/pod/app", delegated: bool = False) -> Path:
    """A unified hierarchy with the memory controller; the bench lives in `own`."""
    (root / own.lstrip("/")).mkdir(parents=True)
    (root / "cgroup.controllers").write_text("cpu io memory pids\n")
    (root / own.lstrip("/") / "cgroup.subtree_control").write_text(
        "memory\n" if delegated else "\n"
    )
    proc = root / "proc-self-cgroup"
    proc.write_text(f"0::{own}\n")
    return proc


def v1_tree(root: Path, own: str = "/jobs/bench") -> Path:
    memory = root / "memory"
    (memory / own.lstrip("/")).mkdir(parents=True)
    (memory / "memory.usage_in_bytes").write_text("1\n")
    proc = root / "proc-self-cgroup"
    proc.write_text(f"4:memory:{own}\n3:cpu,cpuacct:/\n0::/\n")
    return proc


def test_v2_delegates_the_memory_controller_below_the_bench_and_reads_memory_current(
    tmp_path: Path,
) -> None:
    proc = v2_tree(tmp_path)
    groups = fs.MemoryCgroups.create("browser-stack-fleet-7", tmp_path, proc)
    assert groups.kind == "v2" and groups.reason == ""
    parent = tmp_path / "pod" / "app" / "browser-stack-fleet-7"
    assert groups.parent == parent
    # The bench's own cgroup delegates memory, and so does the run's parent.
    assert (tmp_path / "pod" / "app" / "cgroup.subtree_control").read_text() == "+memory"
    assert (parent / "cgroup.subtree_control").read_text() == "+memory"
    child = groups.child("sandbox-0")
    assert child == parent / "sandbox-0" and child.is_dir()
    (child / "memory.current").write_text(f"{300 * 2**20}\n")
    (child / "memory.stat").write_text(
        f"anon {200 * 2**20}\nfile {90 * 2**20}\nshmem {10 * 2**20}\n"
        f"inactive_file {40 * 2**20}\nactive_file {50 * 2**20}\n"
    )
    assert groups.read(child) == {
        "usage_bytes": 300 * 2**20,
        "working_set_bytes": 260 * 2**20,
        "anon_bytes": 200 * 2**20,
        "file_bytes": 90 * 2**20,
        "shmem_bytes": 10 * 2**20,
    }
    for name in ("memory.current", "memory.stat"):
        (child / name).unlink()
    (parent / "cgroup.subtree_control").unlink()
    assert groups.remove() == []
    assert not parent.exists()


def test_v1_memory_controller_reads_usage_in_bytes_and_the_total_counters(
    tmp_path: Path,
) -> None:
    proc = v1_tree(tmp_path)
    groups = fs.MemoryCgroups.create("browser-stack-fleet-7", tmp_path, proc)
    assert groups.kind == "v1"
    assert groups.parent == tmp_path / "memory" / "jobs" / "bench" / "browser-stack-fleet-7"
    child = groups.child("sandbox-1")
    (child / "memory.usage_in_bytes").write_text(f"{100 * 2**20}\n")
    (child / "memory.stat").write_text(
        f"cache {1}\nrss {2}\ntotal_cache {60 * 2**20}\ntotal_rss {35 * 2**20}\n"
        f"total_shmem {5 * 2**20}\ntotal_inactive_file {30 * 2**20}\n"
    )
    figures = groups.read(child)
    assert figures["usage_bytes"] == 100 * 2**20
    assert figures["working_set_bytes"] == 70 * 2**20
    assert (figures["anon_bytes"], figures["file_bytes"], figures["shmem_bytes"]) == (
        35 * 2**20,
        60 * 2**20,
        5 * 2**20,
    )


def test_v2_that_refuses_delegation_falls_back_to_v1_and_says_why(tmp_path: Path) -> None:
    v1_tree(tmp_path)
    proc = v2_tree(tmp_path, own="/busy")
    # Both hierarchies listed, as on a hybrid host.
    proc.write_text("4:memory:/jobs/bench\n0::/busy\n")
    # subtree_control that cannot be written (here: a directory in its place).
    control = tmp_path / "busy" / "cgroup.subtree_control"
    control.unlink()
    control.mkdir()
    groups = fs.MemoryCgroups.create("browser-stack-fleet-7", tmp_path, proc)
    assert groups.kind == "v1"
    assert groups.parent is not None and groups.parent.is_dir()
    assert groups.reason.startswith("cgroup v2 at ")


def test_no_memory_cgroup_at_all_is_reported_not_faked(tmp_path: Path) -> None:
    proc = tmp_path / "proc-self-cgroup"
    proc.write_text("0::/\n")
    groups = fs.MemoryCgroups.create("browser-stack-fleet-7", tmp_path, proc)
    assert groups.kind == "" and groups.parent is None
    assert "no cgroup v2 hierarchy with the memory controller" in groups.reason
    assert "no cgroup v1 memory controller" in groups.reason
    assert groups.child("sandbox-0") is None
    assert groups.remove() == []
