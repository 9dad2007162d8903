"""Memory proportional to use, on the real stack (issue 14).

Runs the real five programs under a private supervisord (scripts/local_stack.py,
as bench/real_stack.py does) with its sidecar in the default mode (BROWSER_STACK_START=
all), and a second sidecar with BROWSER_STACK_START=needed (and idle stop on, for
the parts). One sidecar controls a supervisord, so the two take turns: the one
asked runs, the other is stopped. Then, in one run:

  memory   N rounds, the modes alternating, stack stopped before each: ensure
           needs=cdp, a page opened and read over CDP (Playwright), a few seconds
           to settle (the default mode's rest of the stack comes up meanwhile),
           then the five's USS and PSS over each process tree (GET /memory).
           The ratio needed / all of the medians.
  parts    needed mode: with a Playwright CDP session and a VNC viewer (RFB
           handshake through websocat) held open, an MCP client lists the tools
           and leaves; then the viewer leaves: how long until mcp-server-browser,
           then websocat with openbox, are stopped, next to the idle timeout and
           the check interval.
  gate sets  needed mode: what each gate set (cdp, mcp, vnc, all three) holds once
           settled, the five's USS and PSS.
  prewarm  needed mode, N rounds, stack stopped before each: POST ensure
           {"wait": false} (its latency, next to a bare aiohttp handler's from the
           same client in the same minutes), then 300 ms later an ensure
           needs=cdp (its elapsed_ms), against a plain cold ensure needs=cdp.

Prints tables and writes bench/out/proportional.json. Not a test: nothing is
asserted; figures are ratios against what was measured in the same run.

    .venv/bin/python -m bench.proportional [--rounds 5] [--idle-timeout 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import statistics
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from browser_stack.idle import check_interval
from scripts import local_stack
from tests.helpers import Sidecar as SidecarProcess

from .idle_stop import open_a_page
from .private_stack import Bench, running_stack
from .report import machine
from .warm_ensure import bare_app

REPO = Path(__file__).resolve().parent.parent

MIB = 1024 * 1024
ENSURE = "/v1/browser-stack/ensure"
STATUS = "/v1/browser-stack/status"
SETTLE_S = 4.0
PREWARM_LEAD_S = 0.3


# The stack's own sidecar, as scripts/local_stack.py names its program.
SIDECAR_PROGRAM = "browser-stack"


class Turns:
    """The stack's own sidecar and a second one with other settings, one at a
    time: one sidecar controls a supervisord (claim.py). `use` makes the one
    asked for the running one and returns it, asked as the bench asks its own."""

    def __init__(self, bench: Bench, process: SidecarProcess) -> None:
        self.own = bench
        self.second = dataclasses.replace(bench, base=process.base_url)
        self._process = process

    async def use(self, which: str) -> Bench:
        if which == "second" and not self._process.alive():
            await asyncio.to_thread(self.own.rpc, "stopProcess", SIDECAR_PROGRAM, True)
            await asyncio.to_thread(self._process.start)
        elif which == "own" and self._process.alive():
            await asyncio.to_thread(self._process.terminate)
            await asyncio.to_thread(self.own.rpc, "startProcess", SIDECAR_PROGRAM, True)
            own = self.own
            await asyncio.to_thread(
                local_stack.wait_healthy, own.base, own.root, own.supervisord_pid
            )
        return self.second if which == "second" else self.own


@contextlib.asynccontextmanager
async def second_sidecar(bench: Bench, listen: str, env: dict[str, str]) -> AsyncIterator[Turns]:
    """A second sidecar process on the stack's supervisord, taking turns with
    the stack's own; the stack's own runs again after."""
    full = {
        **os.environ,
        "SUPERVISOR_SERVER_URL": f"unix://{bench.root / 'supervisor.sock'}",
        "BROWSER_STACK_LISTEN": listen,
        "BROWSER_STACK_LOG_FORMAT": "json",
        **env,
    }
    await asyncio.to_thread(bench.rpc, "stopProcess", SIDECAR_PROGRAM, True)
    process = await asyncio.to_thread(
        SidecarProcess, full, bench.root / f"sidecar-{listen.replace(':', '-')}.log"
    )
    turns = Turns(bench, process)
    try:
        yield turns
    finally:
        await turns.use("own")


def tree_totals(report: dict[str, Any]) -> dict[str, float]:
    return {
        "processes": report["total"]["processes"],
        "uss_mib": round(report["total"]["uss_bytes"] / MIB, 1),
        "pss_mib": round(report["total"]["pss_bytes"] / MIB, 1),
        "programs": {
            name: round(p["uss_bytes"] / MIB, 1)
            for name, p in report["programs"].items()
            if p["processes"]
        },
    }


async def section_memory(turns: Turns, rounds: int) -> dict[str, Any]:
    samples: dict[str, list[dict[str, Any]]] = {"needed": [], "all": []}
    for n in range(rounds):
        for mode in ("needed", "all") if n % 2 == 0 else ("all", "needed"):
            caller = await turns.use("second" if mode == "needed" else "own")
            await caller.stop_stack()
            answer = await caller.call("POST", ENSURE, {"needs": ["cdp"]})
            await open_a_page(answer["endpoints"]["cdp"])
            await asyncio.sleep(SETTLE_S)
            sample = tree_totals(await caller.call("GET", "/v1/browser-stack/memory"))
            samples[mode].append(sample)
            print(f"  memory {mode:6}: {sample}", flush=True)
    await (await turns.use("second")).stop_stack()
    med = {
        mode: {k: statistics.median(s[k] for s in rows) for k in ("uss_mib", "pss_mib")}
        for mode, rows in samples.items()
    }
    return {
        "rounds": rounds,
        "median": med,
        "ratio_uss": round(med["needed"]["uss_mib"] / med["all"]["uss_mib"], 3),
        "ratio_pss": round(med["needed"]["pss_mib"] / med["all"]["pss_mib"], 3),
        "samples": samples,
    }


GATE_SETS = (("cdp",), ("mcp",), ("vnc",), ("cdp", "mcp", "vnc"))


async def section_gate_sets(needed: Bench, rounds: int) -> dict[str, Any]:
    """needed mode: what each gate set holds, nothing opened, once settled."""
    out: dict[str, Any] = {}
    for gates in GATE_SETS:
        samples = []
        for _ in range(rounds):
            await needed.stop_stack()
            await needed.call("POST", ENSURE, {"needs": list(gates)})
            await asyncio.sleep(SETTLE_S)
            samples.append(tree_totals(await needed.call("GET", "/v1/browser-stack/memory")))
        out["+".join(gates)] = {
            "running": sorted(samples[0]["programs"]),
            **{k: statistics.median(s[k] for s in samples) for k in ("uss_mib", "pss_mib")},
        }
        print(f"  gates {'+'.join(gates)}: {out['+'.join(gates)]}", flush=True)
    await needed.stop_stack()
    return out


async def alive(sidecar: Bench) -> set[str]:
    status = await sidecar.call("GET", STATUS)
    return {n for n, p in status["programs"].items() if p["state"] in ("STARTING", "RUNNING")}


async def until_stopped(sidecar: Bench, programs: set[str], limit_s: float) -> float:
    began = time.monotonic()
    while programs & await alive(sidecar):
        if time.monotonic() - began > limit_s:
            raise RuntimeError(f"{programs} still up after {limit_s:g} s")
        await asyncio.sleep(0.1)
    return round(time.monotonic() - began, 2)


async def section_parts(needed: Bench, timeout_s: float) -> dict[str, Any]:
    from mcp import ClientSession
    from mcp.client.sse import sse_client
    from playwright.async_api import async_playwright

    await needed.stop_stack()
    out = await needed.call("POST", ENSURE, {"needs": ["cdp", "mcp", "vnc"]})
    async with async_playwright() as p:
        browser = await p.chromium.connect_over_cdp(out["endpoints"]["cdp"])
        try:
            async with (
                aiohttp.ClientSession() as http,
                http.ws_connect(out["endpoints"]["vnc_ws"]) as ws,
            ):
                # A VNC viewer: the handshake's first steps, then it stays.
                banner = b""
                while len(banner) < 12:
                    banner += (await asyncio.wait_for(ws.receive(), 10)).data
                await ws.send_bytes(banner)
                await asyncio.wait_for(ws.receive(), 10)
                async with (
                    sse_client(out["endpoints"]["mcp"]) as (read, write),
                    ClientSession(read, write) as session,
                ):
                    await session.initialize()
                    tools = len((await session.list_tools()).tools)
                mcp_s = await until_stopped(needed, {"mcp-server-browser"}, timeout_s + 60)
            vnc_s = await until_stopped(needed, {"websocat", "openbox"}, timeout_s + 60)
            still = sorted(await alive(needed))
        finally:
            await browser.close()
    await needed.stop_stack()
    check_s = check_interval(timeout_s)
    print(f"  parts: mcp stopped {mcp_s} s after its client left, vnc chain {vnc_s} s", flush=True)
    return {
        "idle_timeout_s": timeout_s,
        "check_interval_s": check_s,
        "mcp_tools": tools,
        "mcp_stopped_after_s": mcp_s,
        "vnc_chain_stopped_after_s": vnc_s,
        "still_up_with_cdp_held": still,
    }


async def timed_post(http: aiohttp.ClientSession, url: str, body: Any) -> tuple[float, int]:
    began = time.perf_counter()
    async with http.post(url, json=body) as response:
        await response.read()
        return (time.perf_counter() - began) * 1000, response.status


async def section_prewarm(needed: Bench, rounds: int) -> dict[str, Any]:
    rows: dict[str, list[float]] = {"accepted_ms": [], "bare_ms": [], "after_ms": [], "cold_ms": []}
    answer = needed.root / "bare-answer.json"
    answer.write_text("{}")
    async with bare_app(answer) as bare_url:
        for _ in range(rounds):
            # A plain cold ensure.
            await needed.stop_stack()
            cold = await needed.call("POST", ENSURE, {"needs": ["cdp"]})
            rows["cold_ms"].append(cold["elapsed_ms"])
            # The bare handler, from the same client, just before.
            await needed.stop_stack()
            for _ in range(5):
                await timed_post(needed.http, bare_url + "post", {})  # warm the connection
            rows["bare_ms"].append(
                statistics.median(
                    [(await timed_post(needed.http, bare_url + "post", {}))[0] for _ in range(5)]
                )
            )
            for _ in range(5):  # the same for the sidecar's connection
                await needed.call("GET", "/healthz")
            ms, status = await timed_post(
                needed.http, needed.base + ENSURE, {"needs": ["cdp"], "wait": False}
            )
            assert status == 202, status
            rows["accepted_ms"].append(ms)
            await asyncio.sleep(PREWARM_LEAD_S)
            after = await needed.call("POST", ENSURE, {"needs": ["cdp"]})
            assert after["cold"], after
            rows["after_ms"].append(after["elapsed_ms"])
            print(
                f"  prewarm: 202 in {ms:.2f} ms (bare {rows['bare_ms'][-1]:.2f}), ensure "
                f"{PREWARM_LEAD_S * 1000:.0f} ms later {after['elapsed_ms']:.0f} ms, "
                f"cold {cold['elapsed_ms']:.0f} ms",
                flush=True,
            )
    await needed.stop_stack()
    med = {k: round(statistics.median(v), 2) for k, v in rows.items()}
    return {
        "rounds": rounds,
        "lead_ms": PREWARM_LEAD_S * 1000,
        "median": med,
        "accepted_vs_bare": round(med["accepted_ms"] / med["bare_ms"], 2),
        "saved_ms": round(med["cold_ms"] - med["after_ms"], 1),
        "samples": rows,
    }


def report(results: dict[str, Any]) -> str:
    m = results["memory"]
    lines = [
        f"### After a CDP-only session (median of {m['rounds']} rounds each)",
        "",
        "| BROWSER_STACK_START | the five: USS MiB | PSS MiB |",
        "|---|--:|--:|",
    ]
    for mode in ("all", "needed"):
        med = m["median"][mode]
        lines.append(f"| {mode} | {med['uss_mib']:.1f} | {med['pss_mib']:.1f} |")
    lines.append(f"| needed / all | {m['ratio_uss']:.2f} | {m['ratio_pss']:.2f} |")
    lines += [
        "",
        "### What each gate set holds (BROWSER_STACK_START=needed, settled, no page)",
        "",
        "| needs | running | the five: USS MiB | PSS MiB |",
        "|---|---|--:|--:|",
    ]
    for gates, row in results["gate_sets"].items():
        running = ", ".join(row["running"])
        lines.append(f"| {gates} | {running} | {row['uss_mib']:.1f} | {row['pss_mib']:.1f} |")
    p = results["parts"]
    lines += [
        "",
        f"### A gate left alone while CDP is used (idle timeout {p['idle_timeout_s']:g} s, "
        f"checks every {p['check_interval_s']:g} s)",
        "",
        f"- MCP client left: mcp-server-browser stopped {p['mcp_stopped_after_s']} s later",
        f"- VNC viewer left: websocat and openbox stopped {p['vnc_chain_stopped_after_s']} s later",
        f"- still up with the CDP session held: {', '.join(p['still_up_with_cdp_held'])}",
    ]
    w = results["prewarm"]["median"]
    lines += [
        "",
        f"### wait: false (median of {results['prewarm']['rounds']} rounds)",
        "",
        f"- 202 answered in {w['accepted_ms']:.2f} ms; a bare aiohttp POST from the same "
        f"client {w['bare_ms']:.2f} ms: ratio {results['prewarm']['accepted_vs_bare']:.2f}",
        f"- an ensure needs=cdp {results['prewarm']['lead_ms']:.0f} ms after it: "
        f"{w['after_ms']:.0f} ms; a cold ensure needs=cdp: {w['cold_ms']:.0f} ms "
        f"(saved {results['prewarm']['saved_ms']:.0f} ms)",
    ]
    return "\n".join(lines)


async def run(rounds: int, timeout_s: float) -> dict[str, Any]:
    listen = os.environ.get("BENCH_LISTEN", "127.0.0.1:8119")
    async with running_stack(listen) as bench:
        needed_env = {"BROWSER_STACK_START": "needed"}
        async with second_sidecar(bench, "127.0.0.1:8129", needed_env) as turns:
            print("[memory]", flush=True)
            memory = await section_memory(turns, rounds)
            needed = await turns.use("second")
            print("[gate sets]", flush=True)
            gate_sets = await section_gate_sets(needed, min(rounds, 2))
            print("[prewarm]", flush=True)
            prewarm = await section_prewarm(needed, rounds)
        idle_env = {
            "BROWSER_STACK_START": "needed",
            "BROWSER_STACK_IDLE_TIMEOUT": f"{timeout_s:g}",
            "BROWSER_STACK_IDLE_MIN_UPTIME": "1",
        }
        async with second_sidecar(bench, "127.0.0.1:8128", idle_env) as turns:
            print("[parts]", flush=True)
            parts = await section_parts(await turns.use("second"), timeout_s)
    return {
        "memory": memory,
        "gate_sets": gate_sets,
        "parts": parts,
        "prewarm": prewarm,
        "machine": machine(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="rounds per mode (5)")
    parser.add_argument("--idle-timeout", type=float, default=10, help="needed mode's, s (10)")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "proportional.json")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.idle_timeout <= 0:
        parser.error("--rounds must be at least 1 and --idle-timeout more than 0")
    results = asyncio.run(run(args.rounds, args.idle_timeout))
    print()
    print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
