"""How long a process has waited for a CPU: time a readiness grace should not count.

/proc/<pid>/schedstat (Linux with CONFIG_SCHED_INFO, which distribution kernels
enable) holds three numbers for the process's main thread: nanoseconds it ran,
nanoseconds it was runnable but waited on a run queue, and its time slices. When a
machine has many more runnable threads than cores (many sandboxes starting their
browsers at once on two cores), a starting program spends most of its wall time
in the second: it is slow, not hung. A hung program (stopped, deadlocked, waiting
on something that never comes) is not runnable and accumulates no such wait.
"""

from __future__ import annotations

from pathlib import Path

PROC = Path("/proc")


def run_queue_wait_s(pid: int, proc: Path = PROC) -> float | None:
    """Seconds the process's main thread has waited for a CPU since it started;
    None where the kernel does not say (no such process, no schedstat)."""
    if pid <= 0:
        return None
    try:
        fields = (proc / str(pid) / "schedstat").read_text().split()
        return int(fields[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None
