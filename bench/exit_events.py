"""Exit and hang events with no request in flight: kill -9 of each program and
SIGSTOP of Chromium, and how soon the sidecar logs them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

from browser_stack.stack import PROGRAMS, Program

from .private_stack import Bench
from .report import table
from .timeline import log_time


def sidecar_records(root: Path, since: float) -> list[dict[str, Any]]:
    """The sidecar's JSON log records logged at or after `since` (Unix time)."""
    out = []
    for line in (root / "log" / "browser-stack.err.log").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "asctime" in record and log_time(record["asctime"]) >= since - 0.002:
            out.append(record)
    return out


async def logged(root: Path, since: float, event: str, program: str, wait_s: float) -> float:
    """When the sidecar logged `event` for `program` (Unix time), waiting up to `wait_s`."""
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        for record in sidecar_records(root, since):
            if record.get("event") == event and record.get("program") == program:
                return log_time(record["asctime"])
        await asyncio.sleep(0.02)
    raise RuntimeError(f"no {event} logged for {program} within {wait_s:g} s")


async def section_events(bench: Bench) -> dict[str, Any]:
    """Kill -9 of each program's main process, and SIGSTOP of Chromium, with no
    request in between: the delay to the sidecar's log line (its asctime has
    millisecond resolution). After each, one ensure brings the stack back."""
    exits: dict[str, float] = {}
    for program in PROGRAMS:
        await bench.ensure()
        await asyncio.sleep(1)
        pid = (await bench.supervisor.process_info())[program].pid
        killed = time.time()
        os.kill(pid, signal.SIGKILL)
        seen = await logged(bench.root, killed, "exited", str(program), 10)
        exits[str(program)] = round((seen - killed) * 1000, 1)
        print(f"  kill -9 {program} (pid {pid}): exit logged after {exits[str(program)]} ms")
    answer = await bench.ensure()
    back = answer["elapsed_ms"]
    await asyncio.sleep(1)
    pid = (await bench.supervisor.process_info())[Program.BROWSER].pid
    stopped = time.time()
    os.kill(pid, signal.SIGSTOP)
    seen = await logged(bench.root, stopped, "lost", "browser", 30)
    hang_s = round(seen - stopped, 2)
    print(f"  SIGSTOP browser (pid {pid}): liveness failure logged after {hang_s} s")
    began = time.monotonic()
    answer = await bench.ensure(["cdp"])  # the grace runs out, then a restart
    with contextlib.suppress(ProcessLookupError):  # gone, if the restart killed it
        os.kill(pid, signal.SIGCONT)
    hang_back = round(time.monotonic() - began, 1)
    print(f"  ensure after the hang: ready after {hang_back} s (grace, then restart)")
    return {
        "kill9_to_log_ms": exits,
        "slowest_exit_ms": max(exits.values()),
        "ensure_back_after_kills_ms": back,
        "sigstop_to_liveness_failure_s": hang_s,
        "ensure_back_after_hang_s": hang_back,
    }



def report_events(r: dict[str, Any]) -> str:
    rows = [[f"kill -9 {p}", f"{ms:.1f} ms"] for p, ms in r["kill9_to_log_ms"].items()]
    hang = r["sigstop_to_liveness_failure_s"]
    rows.append(["SIGSTOP browser, to its liveness failure", f"{hang} s"])
    out = table(["with no request in between", "seen after"], rows)
    out += (
        f"\n\nOne ensure after the five kills: {r['ensure_back_after_kills_ms']:.0f} ms; "
        f"after the hang: {r['ensure_back_after_hang_s']} s (the grace, then a restart)."
    )
    return out
