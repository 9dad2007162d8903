"""Memory: the sidecar's USS/RSS fresh and after many warm ensures; the five
programs' USS/PSS/RSS stopped against started."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psutil

from browser_stack.stack import PROGRAMS
from scripts import local_stack

from .private_stack import SIDECAR, Bench
from .report import table
from .warm_ensure import counts_between, sidecar_counts

MIB = 1024 * 1024


def uss_rss(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    return {"uss_mib": round(info.uss / MIB, 2), "rss_mib": round(info.rss / MIB, 2)}


async def warm_requests(bench: Bench, count: int, concurrency: int = 16) -> None:
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await bench.ensure()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def section_memory(bench: Bench, requests: int) -> dict[str, Any]:
    # The five, stopped and started (through the sidecar's own measurement).
    await bench.stop_stack()
    stopped = await bench.call("GET", "/v1/browser-stack/memory?sample=stopped")
    await bench.ensure()
    await asyncio.sleep(5)  # let Chromium settle after its first page
    started = await bench.call("GET", "/v1/browser-stack/memory?sample=started")
    programs = {}
    for program in (*map(str, PROGRAMS), "total"):
        a = stopped["total"] if program == "total" else stopped["programs"][program]
        b = started["total"] if program == "total" else started["programs"][program]
        programs[program] = {
            "processes": b["processes"] - a["processes"],
            **{
                f"{kind}_mib": round((b[f"{kind}_bytes"] - a[f"{kind}_bytes"]) / MIB, 1)
                for kind in ("uss", "pss", "rss")
            },
        }
    # The sidecar: a fresh process (restarted by supervisord), the stack up.
    await asyncio.to_thread(bench.rpc, "stopProcess", SIDECAR, True)
    await asyncio.to_thread(bench.rpc, "startProcess", SIDECAR, True)
    await asyncio.to_thread(local_stack.wait_healthy, bench.base, bench.root, bench.supervisord_pid)
    pid = await bench.sidecar_pid()
    await asyncio.sleep(2)
    sidecar = {"at_rest": uss_rss(pid)}
    before, began = sidecar_counts(await bench.metrics()), time.monotonic()
    await warm_requests(bench, requests)
    asked = counts_between(before, sidecar_counts(await bench.metrics()))
    asked_seconds = round(time.monotonic() - began, 1)
    sidecar[f"after_{requests}"] = uss_rss(pid)
    await warm_requests(bench, requests)
    sidecar[f"after_{2 * requests}"] = uss_rss(pid)
    rest = sidecar["at_rest"]["uss_mib"]
    return {
        "programs_started_minus_stopped": programs,
        "cgroup": started.get("cgroup", {}),
        "sidecar": sidecar,
        "sidecar_growth_mib": {
            f"after_{requests}": round(sidecar[f"after_{requests}"]["uss_mib"] - rest, 2),
            f"after_{2 * requests}": round(sidecar[f"after_{2 * requests}"]["uss_mib"] - rest, 2),
        },
        "requests": requests,
        "asked_during_requests": asked,
        "requests_seconds": asked_seconds,
    }



def report_memory(r: dict[str, Any]) -> str:
    rows = [
        [
            f"`{p}`" if p != "total" else "**all five**",
            f"+{v['processes']}",
            f"+{v['uss_mib']:.1f}",
            f"+{v['pss_mib']:.1f}",
            f"+{v['rss_mib']:.1f}",
        ]
        for p, v in r["programs_started_minus_stopped"].items()
    ]
    out = table(["started minus stopped", "processes", "USS MiB", "PSS MiB", "RSS MiB"], rows)
    s = r["sidecar"]
    out += "\n\n" + table(
        ["sidecar", "USS MiB", "RSS MiB"],
        [[k.replace("_", " "), f"{v['uss_mib']:.1f}", f"{v['rss_mib']:.1f}"] for k, v in s.items()],
    )
    return out
