"""Memory before and after an idle stop, on the real stack.

Runs the real five programs and the sidecar under a private supervisord
(scripts/local_stack.py), the sidecar with BROWSER_STACK_IDLE_TIMEOUT set, and
N times (--cycles):

  1. ensure the whole stack, open a page over CDP with Playwright (a session's
     worth of work), disconnect, let Chromium settle;
  2. sample: the five's USS/PSS/RSS and process count (GET /memory), the
     sidecar's, and the machine's MemAvailable (/proc/meminfo);
  3. wait, touching nothing, until the sidecar's idle monitor stops the stack
     (its status counts idle stops), and sample again.

Prints a table of the medians (before, after, freed) and writes JSON. Not a
test: nothing is asserted. MemAvailable is the whole machine's and moves with
everything else on it; the per-program figures are the five's own.

    .venv/bin/python -m bench.idle_stop [--cycles 3] [--timeout 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from .private_stack import running_stack

REPO = Path(__file__).resolve().parent.parent
MIB = 1024 * 1024
STATUS = "/v1/browser-stack/status"
SETTLE_S = 5.0


def mem_available_mib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no MemAvailable in /proc/meminfo")


async def sample(bench: Any, name: str) -> dict[str, float]:
    """The sidecar's memory report for the five and itself, and the machine's."""
    report = await bench.call("GET", f"/v1/browser-stack/memory?sample={name}")
    available = mem_available_mib()
    total = report["total"]
    return {
        "processes": total["processes"],
        "uss_mib": round(total["uss_bytes"] / MIB, 1),
        "pss_mib": round(total["pss_bytes"] / MIB, 1),
        "rss_mib": round(total["rss_bytes"] / MIB, 1),
        "sidecar_uss_mib": round(report["sidecar"]["uss_bytes"] / MIB, 1),
        "mem_available_mib": available,
    }


async def open_a_page(cdp_url: str) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        browser = await p.chromium.connect_over_cdp(cdp_url)
        try:
            page = await browser.contexts[0].new_page()
            await page.goto("data:text/html,<h1>a session's page</h1>")
            await page.evaluate("document.title = 'worked'")
            await page.close()
        finally:
            await browser.close()


async def cycle(bench: Any, timeout_s: float) -> dict[str, Any]:
    answer = await bench.ensure()
    await open_a_page(answer["endpoints"]["cdp"])
    await asyncio.sleep(SETTLE_S)
    before = await sample(bench, "before-idle-stop")
    stops = (await bench.call("GET", STATUS))["idle"]["idle_stops"]
    began = time.monotonic()
    while True:
        status = await bench.call("GET", STATUS)
        if status["idle"]["idle_stops"] > stops and all(
            p["state"] in ("STOPPED", "EXITED") for p in status["programs"].values()
        ):
            break
        if time.monotonic() - began > timeout_s + 120:
            raise RuntimeError(f"no idle stop after {timeout_s + 120:g} s: {status['idle']}")
        await asyncio.sleep(0.5)
    waited = time.monotonic() - began
    await asyncio.sleep(2)  # the kernel frees the pages of exited processes
    after = await sample(bench, "after-idle-stop")
    return {"before": before, "after": after, "stopped_after_s": round(waited, 1)}


def median(rows: list[dict[str, Any]], when: str, key: str) -> float:
    return round(statistics.median(r[when][key] for r in rows), 1)


def report(rows: list[dict[str, Any]]) -> str:
    keys = [
        ("processes", "the five: processes"),
        ("uss_mib", "the five: USS (MiB)"),
        ("pss_mib", "the five: PSS (MiB)"),
        ("rss_mib", "the five: RSS (MiB)"),
        ("sidecar_uss_mib", "sidecar USS (MiB)"),
        ("mem_available_mib", "machine MemAvailable (MiB)"),
    ]
    lines = [
        "| figure | before idle stop | after idle stop | after - before |",
        "|---|--:|--:|--:|",
    ]
    for key, label in keys:
        a, b = median(rows, "before", key), median(rows, "after", key)
        lines.append(f"| {label} | {a:g} | {b:g} | {b - a:+g} |")
    return "\n".join(lines)


async def run(cycles: int, timeout_s: float) -> list[dict[str, Any]]:
    os.environ["BROWSER_STACK_IDLE_TIMEOUT"] = f"{timeout_s:g}"
    os.environ["BROWSER_STACK_IDLE_MIN_UPTIME"] = "0"
    rows = []
    async with running_stack(os.environ.get("BENCH_LISTEN", "127.0.0.1:8119")) as bench:
        for n in range(cycles):
            row = await cycle(bench, timeout_s)
            print(f"cycle {n + 1}: {json.dumps(row)}", flush=True)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=3, help="start/idle-stop cycles (3)")
    parser.add_argument("--timeout", type=float, default=10, help="idle timeout, s (10)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "idle.json")
    args = parser.parse_args(argv)
    if args.cycles < 1 or args.timeout <= 0:
        parser.error("--cycles must be at least 1 and --timeout more than 0")
    rows = asyncio.run(run(args.cycles, args.timeout))
    print(f"\n### Memory before and after an idle stop (median of {len(rows)} cycles)\n")
    print(report(rows))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"timeout_s": args.timeout, "cycles": rows}, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
