"""What else used the CPU while a bench measured: foreign load, section by section."""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from scripts import local_stack


class Noise:
    """Samples every process's CPU time once a second; what is neither the stack
    (BROWSER_STACK_LOCAL_RUN in its environment), this bench nor its children (wrk,
    supervisorctl) is foreign load. Processes that live under a second are missed."""

    def __init__(self, root: Path) -> None:
        self._marker = str(root.resolve())
        self._ours: dict[int, bool] = {}
        self._last: dict[int, float] = {}
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.windows: list[tuple[float, float, dict[str, float]]] = []  # (t, foreign, by name)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._sample()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def _is_ours(self, p: psutil.Process) -> bool:
        if p.pid not in self._ours:
            ours = p.pid == os.getpid()
            with contextlib.suppress(psutil.Error):
                ours = ours or p.environ().get(local_stack.MARKER) == self._marker
                ours = ours or os.getpid() in {a.pid for a in p.parents()}
            self._ours[p.pid] = ours
        return self._ours[p.pid]

    def _sample(self) -> dict[str, float]:
        foreign: dict[str, float] = {}
        now: dict[int, float] = {}
        for p in psutil.process_iter(["name", "cpu_times"]):
            times = p.info["cpu_times"]
            if times is None:
                continue
            now[p.pid] = times.user + times.system
            delta = now[p.pid] - self._last.get(p.pid, now[p.pid])
            if delta > 0 and not self._is_ours(p):
                name = p.info["name"] or str(p.pid)
                foreign[name] = foreign.get(name, 0.0) + delta
        self._last = now
        return foreign

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            by_name = self._sample()
            with self._lock:
                self.windows.append((time.monotonic(), sum(by_name.values()), by_name))

    def summary(self, since: float, until: float) -> dict[str, Any]:
        with self._lock:
            inside = [w for w in self.windows if since < w[0] <= until + 1.0]
        if not inside:
            return {"foreign_cpu_mean_pct": 0.0, "foreign_cpu_max_pct": 0.0, "top": {}}
        top: dict[str, float] = {}
        for _, _, by_name in inside:
            for name, value in by_name.items():
                top[name] = top.get(name, 0.0) + value
        heaviest = sorted(top.items(), key=lambda kv: -kv[1])[:5]
        return {
            # Percent of one core, averaged over the section's one-second windows.
            "foreign_cpu_mean_pct": round(100 * sum(w[1] for w in inside) / len(inside), 1),
            "foreign_cpu_max_pct": round(100 * max(w[1] for w in inside), 1),
            "top": {name: round(100 * v / len(inside), 1) for name, v in heaviest if v > 0.01},
        }


@contextlib.contextmanager
def timed(noise: Noise, into: dict[str, Any], name: str) -> Iterator[None]:
    began = time.monotonic()
    yield
    into[name] = {
        "seconds": round(time.monotonic() - began, 1),
        **noise.summary(began, time.monotonic()),
    }
