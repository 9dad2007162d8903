"""Cold start: N interleaved runs each from a stopped stack, the sidecar's ensure
against the critical path without it and against starting the five by hand."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from browser_stack.core_types import Probe
from browser_stack.stack import PROGRAMS, SPAWN_AFTER, Program

from .private_stack import Bench
from .report import table

COLD_METHODS = ("ensure-all", "ensure-cdp", "crit-all", "crit-cdp", "hand")
PROBE_INTERVAL_S = 0.005


def _now_ms(began: float) -> float:
    return (time.perf_counter() - began) * 1000


async def _wait_ready(probe: Probe) -> None:
    # Polling is the point: the sidecar polls its probes the same way.
    while not (await probe()).ok:  # noqa: ASYNC110
        await asyncio.sleep(PROBE_INTERVAL_S)


async def run_ensure(bench: Bench, needs: list[str] | None) -> dict[str, float]:
    began = time.perf_counter()
    await bench.ensure(needs)
    return {"total": _now_ms(began)}


async def run_critical_path(bench: Bench, programs: tuple[Program, ...]) -> dict[str, float]:
    """(b): spawn each program as soon as what it needs answered; no sidecar."""
    probes = bench.fresh_probes()
    ready = {p: asyncio.Event() for p in programs}
    times: dict[str, float] = {}
    began = time.perf_counter()

    async def bring_up(program: Program) -> None:
        for dependency in SPAWN_AFTER[program]:
            await ready[dependency].wait()
        # Positional False: XML-RPC has no keyword arguments (wait=False).
        await bench.supervisor.start(program)  # startProcess(name, False)
        times[f"spawn {program}"] = _now_ms(began)
        await _wait_ready(probes[program])
        times[str(program)] = _now_ms(began)
        ready[program].set()

    await asyncio.gather(*(bring_up(p) for p in programs))
    times["total"] = max(times[str(p)] for p in programs)
    return times


async def run_hand(bench: Bench) -> dict[str, float]:
    """(a): supervisorctl start with the five names (each waits startsecs), then poll."""
    probes = bench.fresh_probes()
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "supervisor.supervisorctl",
        "-c",
        str(bench.conf),
        "start",
        *PROGRAMS,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"supervisorctl start failed: {out.decode(errors='replace')}")
    times = {"supervisorctl": _now_ms(began)}

    async def poll(program: Program) -> None:
        await _wait_ready(probes[program])
        times[str(program)] = _now_ms(began)

    await asyncio.gather(*(poll(p) for p in PROGRAMS))
    times["total"] = _now_ms(began)
    return times


COLD_RUNNERS: dict[str, Callable[[Bench], Awaitable[dict[str, float]]]] = {
    "ensure-all": lambda b: run_ensure(b, None),
    "ensure-cdp": lambda b: run_ensure(b, ["cdp"]),
    "crit-all": lambda b: run_critical_path(b, PROGRAMS),
    "crit-cdp": lambda b: run_critical_path(b, (Program.TIGERVNC, Program.BROWSER)),
    "hand": run_hand,
}


def spread(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    quartiles = statistics.quantiles(ordered, n=4) if len(ordered) > 1 else [ordered[0]] * 3
    return {
        "median_ms": round(statistics.median(ordered), 1),
        "p25_ms": round(quartiles[0], 1),
        "p75_ms": round(quartiles[2], 1),
        "min_ms": round(ordered[0], 1),
        "max_ms": round(ordered[-1], 1),
        "n": len(ordered),
    }


async def section_cold(bench: Bench, runs: int) -> dict[str, Any]:
    # Once each, not counted: the page cache holds the programs' files afterwards.
    for warmup in ("ensure-all", "crit-all"):
        await bench.stop_stack()
        await COLD_RUNNERS[warmup](bench)
    samples: dict[str, list[dict[str, float]]] = {m: [] for m in COLD_METHODS}
    for i in range(runs):
        # Rotate the order so no method always follows the same one.
        order = COLD_METHODS[i % len(COLD_METHODS) :] + COLD_METHODS[: i % len(COLD_METHODS)]
        for method in order:
            await bench.stop_stack()
            samples[method].append(await COLD_RUNNERS[method](bench))
        totals = ", ".join(f"{m} {samples[m][-1]['total']:.0f}" for m in COLD_METHODS)
        print(f"  cold run {i + 1}/{runs}: {totals} ms", flush=True)
    await bench.stop_stack()
    results = {m: spread([s["total"] for s in samples[m]]) for m in COLD_METHODS}
    # Where the time goes inside the baselines: each program's readiness, median.
    per_program = {
        m: {
            key: round(statistics.median(s[key] for s in samples[m]), 1)
            for key in samples[m][0]
            if key != "total"
        }
        for m in ("crit-all", "crit-cdp", "hand")
    }
    med = {m: results[m]["median_ms"] for m in COLD_METHODS}
    return {
        "runs": runs,
        "results": results,
        "per_program_median_ms": per_program,
        "ratios": {
            "ensure-all / crit-all": round(med["ensure-all"] / med["crit-all"], 3),
            "ensure-all / hand": round(med["ensure-all"] / med["hand"], 3),
            "ensure-cdp / crit-cdp": round(med["ensure-cdp"] / med["crit-cdp"], 3),
            "ensure-cdp / crit-all's CDP": round(
                med["ensure-cdp"] / per_program["crit-all"]["browser"], 3
            ),
            "ensure-cdp / hand": round(med["ensure-cdp"] / med["hand"], 3),
        },
        "samples_ms": {m: [round(s["total"], 1) for s in samples[m]] for m in COLD_METHODS},
    }



COLD_LABELS = {
    "ensure-all": "`ensure` (all gates)",
    "ensure-cdp": "`ensure` `needs=cdp`",
    "crit-all": "(b) critical path, all five, no sidecar",
    "crit-cdp": "(b) critical path to CDP (Xvnc + Chromium only)",
    "hand": "(a) `supervisorctl start` the five, then poll",
}


def report_cold(r: dict[str, Any]) -> str:
    rows = [
        [
            COLD_LABELS[m],
            f"{v['median_ms']:.0f}",
            f"{v['p25_ms']:.0f}-{v['p75_ms']:.0f}",
            f"{v['min_ms']:.0f}",
            f"{v['max_ms']:.0f}",
        ]
        for m, v in r["results"].items()
    ]
    out = table(["cold start", "median ms", "p25-p75", "min", "max"], rows)
    per = r["per_program_median_ms"]["crit-all"]
    out += "\n\n(b)'s programs ready at (median ms): " + ", ".join(
        f"{p} {per[str(p)]:.0f}" for p in PROGRAMS
    )
    return out
