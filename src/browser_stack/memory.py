"""What the stack costs in memory, measured the way the savings should be claimed.

Per program, over its whole process tree (Chromium is a dozen processes): USS
(what the tree alone holds, an undercount), PSS (shared pages split among their
users) and summed RSS (counts shared pages again for every process, an
overcount). What a stop frees lies between summed USS and summed PSS. The
container's cgroup v2 figures are what Kubernetes sees.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from browser_stack.stack import PROGRAMS, Program

MIB = 1024 * 1024
CGROUP_ROOT = Path("/sys/fs/cgroup")
CGROUP_STAT_KEYS = ("anon", "file", "shmem")


@dataclass(frozen=True)
class TreeMemory:
    processes: int = 0
    uss: int = 0
    pss: int = 0
    rss: int = 0

    def __add__(self, other: TreeMemory) -> TreeMemory:
        return TreeMemory(
            self.processes + other.processes,
            self.uss + other.uss,
            self.pss + other.pss,
            self.rss + other.rss,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "processes": self.processes,
            "uss_bytes": self.uss,
            "pss_bytes": self.pss,
            "rss_bytes": self.rss,
        }


def process_tree(pid: int) -> list[psutil.Process]:
    """The process and all its descendants; empty if it is gone."""
    if pid <= 0:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def tree_memory(processes: Iterable[psutil.Process]) -> TreeMemory:
    total = TreeMemory()
    for process in processes:
        with contextlib.suppress(psutil.Error):  # a child may exit while we read
            info = process.memory_full_info()
            total += TreeMemory(1, info.uss, getattr(info, "pss", 0), info.rss)
    return total


def cgroup_memory(
    root: Path = CGROUP_ROOT, proc_self: Path = Path("/proc/self/cgroup")
) -> dict[str, Any]:
    """The container's memory as cgroup v2 accounts it, or why there is none."""
    try:
        lines = proc_self.read_text().splitlines()
    except OSError as exc:
        return {"available": False, "reason": f"cannot read {proc_self}: {exc}"}
    unified = [line.split(":", 2)[2] for line in lines if line.startswith("0::")]
    if not unified or not (root / "cgroup.controllers").exists():
        return {"available": False, "reason": "no cgroup v2 hierarchy (cgroup v1 or none)"}
    group = root / unified[0].lstrip("/")
    for candidate in (group, root):  # inside a container the group may be the mount root
        current = candidate / "memory.current"
        if current.exists():
            stat: dict[str, int] = {}
            with contextlib.suppress(OSError):
                for line in (candidate / "memory.stat").read_text().splitlines():
                    key, _, value = line.partition(" ")
                    if key in CGROUP_STAT_KEYS or key == "inactive_file":
                        stat[key] = int(value)
            used = int(current.read_text().strip())
            return {
                "available": True,
                "path": str(candidate),
                "memory_current_bytes": used,
                **{f"{key}_bytes": stat.get(key, 0) for key in CGROUP_STAT_KEYS},
                # What kubectl top shows: usage minus inactive file cache.
                "working_set_bytes": used - stat.get("inactive_file", 0),
            }
    return {"available": False, "reason": f"cgroup v2 without memory.current at {group}"}


def report(
    main_pids: Mapping[Program, int],
    states: Mapping[Program, str],
    sample: str = "",
    *,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A memory sample: each program's tree, their total, the sidecar, the cgroup."""
    programs: dict[str, Any] = {}
    total = TreeMemory()
    for program in PROGRAMS:
        memory = tree_memory(process_tree(main_pids.get(program, 0)))
        total += memory
        programs[str(program)] = {"state": states.get(program, "UNKNOWN"), **memory.to_dict()}
    me = tree_memory([psutil.Process(os.getpid())])
    return {
        "timestamp": (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds"),
        "sample": sample,
        "programs": programs,
        "total": total.to_dict(),
        "sidecar": me.to_dict(),
        "cgroup": cgroup_memory(),
    }


def _mib(value: int) -> str:
    return f"{value / MIB:.1f}"


def markdown(sample: Mapping[str, Any]) -> str:
    title = f"memory sample {sample.get('sample') or '(unnamed)'} at {sample['timestamp']}"
    lines = [
        f"**{title}**",
        "",
        "| program | state | processes | USS MiB | PSS MiB | RSS MiB |",
        "|---|---|---:|---:|---:|---:|",
    ]
    rows = [*sample["programs"].items(), ("**all five**", {"state": "", **sample["total"]})]
    rows.append(("browser-stack (sidecar)", {"state": "", **sample["sidecar"]}))
    for name, row in rows:
        lines.append(
            f"| {name} | {row['state']} | {row['processes']} | {_mib(row['uss_bytes'])} "
            f"| {_mib(row['pss_bytes'])} | {_mib(row['rss_bytes'])} |"
        )
    cgroup = sample["cgroup"]
    lines.append("")
    if cgroup.get("available"):
        lines.append(
            f"cgroup v2: memory.current {_mib(cgroup['memory_current_bytes'])} MiB, "
            f"working set {_mib(cgroup['working_set_bytes'])} MiB (anon "
            f"{_mib(cgroup['anon_bytes'])}, file {_mib(cgroup['file_bytes'])}, shmem "
            f"{_mib(cgroup['shmem_bytes'])})"
        )
    else:
        lines.append(f"cgroup v2: not available ({cgroup.get('reason', 'unknown')})")
    return "\n".join(lines)


_SAMPLE_KEYS = ("timestamp", "programs", "total", "sidecar")
_TREE_KEYS = ("processes", "uss_bytes", "pss_bytes", "rss_bytes")


def check_sample(value: Any) -> Mapping[str, Any]:
    """`value` if it is a memory sample as `report` writes it; else ValueError
    saying what is missing, for `memory diff` to print."""
    if not isinstance(value, dict):
        raise ValueError(f"not a memory sample: a JSON {type(value).__name__}, not an object")
    missing = [key for key in _SAMPLE_KEYS if key not in value]
    if missing:
        raise ValueError(
            "not a memory sample (GET /v1/browser-stack/memory writes one): "
            f"no {', '.join(missing)}"
        )
    trees = {"total": value["total"], "sidecar": value["sidecar"]}
    if not isinstance(value["programs"], dict):
        raise ValueError("not a memory sample: programs is not an object")
    trees.update(value["programs"])
    for name, tree in trees.items():
        if not isinstance(tree, dict) or not all(
            isinstance(tree.get(key), int) for key in _TREE_KEYS
        ):
            raise ValueError(
                f"not a memory sample: {name} lacks whole numbers for {', '.join(_TREE_KEYS)}"
            )
    return value


def diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """What changed from one sample to the other, per program and in total."""
    name_a = before.get("sample") or before["timestamp"]
    name_b = after.get("sample") or after["timestamp"]
    lines = [
        f"**{name_a} → {name_b}** (MiB; + means {name_b} uses more)",
        "",
        "| program | processes | USS | PSS | RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    rows = [(p, before["programs"].get(p), after["programs"].get(p)) for p in after["programs"]]
    rows.append(("**all five**", before["total"], after["total"]))
    rows.append(("browser-stack (sidecar)", before["sidecar"], after["sidecar"]))
    for name, a, b in rows:
        a = a or TreeMemory().to_dict()
        b = b or TreeMemory().to_dict()
        cells = [f"{b['processes'] - a['processes']:+d}"]
        for key in ("uss_bytes", "pss_bytes", "rss_bytes"):
            cells.append(f"{(b[key] - a[key]) / MIB:+.1f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    ca, cb = before.get("cgroup", {}), after.get("cgroup", {})
    if ca.get("available") and cb.get("available"):
        delta = (cb["memory_current_bytes"] - ca["memory_current_bytes"]) / MIB
        ws = (cb["working_set_bytes"] - ca["working_set_bytes"]) / MIB
        lines += ["", f"cgroup v2 memory.current {delta:+.1f} MiB, working set {ws:+.1f} MiB"]
    return "\n".join(lines)
