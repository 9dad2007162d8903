"""Benchmarks on the real stack: cold start, warm ensure, memory, a start's timeline.

Runs the real five programs and the sidecar under a private supervisord
(scripts/local_stack.py) and measures, section by section (--only):

  cold      N interleaved runs each, stack stopped before every run:
              ensure-all   POST /ensure                       (all gates)
              ensure-cdp   POST /ensure {"needs": ["cdp"]}
              hand         (a) `supervisorctl start tigervnc openbox browser
                           mcp-server-browser websocat`, then poll until all five answer
              crit-all     (b) the critical path, no sidecar: startProcess(name, False)
                           over XML-RPC for tigervnc and mcp-server-browser at once, the
                           other three as soon as tigervnc's probe passes; the sidecar's
                           own probes (browser_stack.probes, same Settings) every 5 ms
              crit-cdp     the same for tigervnc and the browser alone, until CDP answers
  warm      wrk against POST /ensure (stack up) and a bare aiohttp handler that returns a
            small JSON (started here, the floor of any aiohttp endpoint), interleaved,
            at 1, 16 and 64 connections: p50/p99 and requests/s, and what the sidecar
            asked meanwhile (probes by purpose, XML-RPC calls by method, from /metrics)
  events    with no request in between: kill -9 of each program's main process, and
            the delay to the sidecar's "exited" log line; SIGSTOP of Chromium and the
            delay to its liveness failure; one ensure brings the stack back after each
  gate      nginx with deploy/nginx in front of the stack: a warm gated
            /cdp/json/version against the same request straight to Chromium
  memory    the sidecar's USS/RSS fresh and after 10,000 warm ensures; the five
            programs' USS/PSS/RSS stopped vs started (GET /memory)
  timeline  one cold ensure drawn from the logs: when the sidecar asked supervisord
            for each program, when supervisord said RUNNING, when its probe passed

Prints markdown tables, writes bench/out/<section>.json and the timeline PNG. Not a
test: figures are compared with the targets of issue 6 and reported, never asserted.

    .venv/bin/python -m bench.real_stack [--only cold,warm,memory,timeline] [--runs 10]

The ports and display come from the environment like scripts/local_stack.py's
(DISPLAY, VNC_SERVER_PORT, BROWSER_REMOTE_DEBUGGING_PORT, MCP_SERVER_BROWSER_PORT,
WEBSOCKET_PROXY_PORT). Needs `wrk` for the warm section (scripts/install-deps.sh --dev).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from browser_stack.stack import PROGRAMS
from scripts import local_stack

from .cold_start import report_cold, section_cold
from .exit_events import report_events, section_events
from .nginx_gate import section_gate
from .noise import Noise, timed
from .private_stack import running_stack
from .report import machine, table
from .stack_memory import report_memory, section_memory
from .timeline import no_plot_here, section_timeline
from .warm_ensure import report_warm, section_warm

REPO = Path(__file__).resolve().parent.parent
SECTIONS = ("cold", "warm", "events", "gate", "memory", "timeline")

# The targets (issues 6 and 12), on a 2-core machine; warm ones as ratios to a bare
# aiohttp handler measured in the same minutes.
TARGETS = {
    "cold ensure-all / crit-all": ("<=", 1.10),
    "cold ensure-all / hand": ("<=", 0.15),
    "cold ensure-cdp / crit-cdp": ("<=", 1.10),
    "warm p50 ensure / bare, 1 client": ("<=", 1.5),
    "warm rps ensure / bare, 64 clients": (">=", 0.8),
    "warm p99 ensure / bare, 64 clients": ("<=", 1.5),
    "start probes during warm ensures": ("<=", 0),
    "XML-RPC calls during warm ensures, beyond liveness ticks": ("<=", 0),
    "exit seen, kill -9 to log line, slowest of five (ms)": ("<=", 100),
    "hang seen, SIGSTOP to liveness failure (s)": ("<=", 3.0),
    "gated - direct, warm median (ms)": ("<=", 2.0),
    "sidecar USS growth after 10,000 (MiB)": ("<=", 1.0),
}


def targets(results: dict[str, Any], clients: tuple[int, ...]) -> list[list[str]]:
    figures: dict[str, float] = {}
    if "cold" in results:
        ratios = results["cold"]["ratios"]
        figures["cold ensure-all / crit-all"] = ratios["ensure-all / crit-all"]
        figures["cold ensure-all / hand"] = ratios["ensure-all / hand"]
        figures["cold ensure-cdp / crit-cdp"] = ratios["ensure-cdp / crit-cdp"]
    if "warm" in results and 1 in clients and 64 in clients:
        w = results["warm"]["results"]
        figures["warm p50 ensure / bare, 1 client"] = w["ensure c=1"]["p50_vs_bare"]
        figures["warm rps ensure / bare, 64 clients"] = w["ensure c=64"]["rps_vs_bare"]
        figures["warm p99 ensure / bare, 64 clients"] = w["ensure c=64"]["p99_vs_bare"]
    if "memory" in results:
        m = results["memory"]
        asked = m["asked_during_requests"]
        figures["start probes during warm ensures"] = asked.get("probes start", 0)
        # A liveness tick: one getAllProcessInfo and a probe of each of the five;
        # and the /metrics read that counts them makes one of its own.
        ticks = asked.get("probes liveness", 0) / len(PROGRAMS)
        calls = sum(v for k, v in asked.items() if k.startswith("xmlrpc"))
        figures["XML-RPC calls during warm ensures, beyond liveness ticks"] = max(
            0, round(calls - ticks - 1)
        )
        figures["sidecar USS growth after 10,000 (MiB)"] = m["sidecar_growth_mib"][
            f"after_{m['requests']}"
        ]
    if "events" in results:
        ev = results["events"]
        figures["exit seen, kill -9 to log line, slowest of five (ms)"] = ev["slowest_exit_ms"]
        figures["hang seen, SIGSTOP to liveness failure (s)"] = ev["sigstop_to_liveness_failure_s"]
    if "gate" in results:
        figures["gated - direct, warm median (ms)"] = results["gate"]["gated_minus_direct_ms"]
    rows = []
    for name, value in figures.items():
        op, limit = TARGETS[name]
        met = value <= limit if op == "<=" else value >= limit
        rows.append([name, f"{value:g}", f"{op} {limit:g}", "met" if met else "**missed**"])
    return rows



# -- main -----------------------------------------------------------------------------


@dataclass
class Options:
    only: tuple[str, ...]
    runs: int
    seconds: float
    repeats: int
    clients: tuple[int, ...]
    requests: int
    out: Path
    png: Path
    listen: str
    results: dict[str, Any] = field(default_factory=dict)


async def run(options: Options) -> dict[str, Any]:
    results = options.results
    noise_by_section: dict[str, Any] = {}
    async with running_stack(options.listen) as bench:
        noise = Noise(bench.root)
        noise.start()
        try:
            await bench.ensure()  # the first start of all: fills the page cache
            browser = (await bench.call("GET", "/v1/browser-stack/status"))["programs"]["browser"]
            results["browser"] = browser["probe"]
            for section in SECTIONS:
                if section not in options.only:
                    continue
                print(f"[{section}]", flush=True)
                with timed(noise, noise_by_section, section):
                    if section == "cold":
                        results["cold"] = await section_cold(bench, options.runs)
                    elif section == "warm":
                        results["warm"] = await section_warm(
                            bench, options.seconds, options.clients, options.repeats
                        )
                    elif section == "events":
                        results["events"] = await section_events(bench)
                    elif section == "gate":
                        results["gate"] = await section_gate(bench)
                    elif section == "memory":
                        results["memory"] = await section_memory(bench, options.requests)
                    elif section == "timeline":
                        results["timeline"] = await section_timeline(bench, options.png)
        finally:
            noise.stop()
            with contextlib.suppress(Exception):
                await bench.stop_stack()
    results["noise"] = noise_by_section
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", default=",".join(SECTIONS), help="sections, comma-separated")
    parser.add_argument("--runs", type=int, default=10, help="cold runs per method (10)")
    parser.add_argument("--seconds", type=float, default=10, help="each wrk run (10 s)")
    parser.add_argument("--repeats", type=int, default=3, help="wrk runs per configuration (3)")
    parser.add_argument("--clients", default="1,16,64", help="wrk connections (1,16,64)")
    parser.add_argument("--requests", type=int, default=10_000, help="for the sidecar's memory")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "out")
    parser.add_argument("--png", type=Path, default=REPO / "docs" / "cold-start-timeline.png")
    parser.add_argument("--listen", default="127.0.0.1:8119", help="the sidecar's address")
    args = parser.parse_args(argv)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = set(only) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    clients = tuple(int(c) for c in args.clients.split(","))
    if "timeline" in only and (why := no_plot_here()):
        print(f"bench: no timeline section: {why}", file=sys.stderr)
        only = tuple(s for s in only if s != "timeline")
    options = Options(
        only,
        args.runs,
        args.seconds,
        args.repeats,
        clients,
        args.requests,
        args.out,
        args.png.resolve(),
        args.listen,
    )
    began = dt.datetime.now().astimezone()
    load_before = os.getloadavg()
    try:
        results = asyncio.run(run(options))
    except local_stack.StackError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    meta = {
        "started": began.isoformat(timespec="seconds"),
        "machine": machine(),
        "browser": results.pop("browser", ""),
        "loadavg_before": [round(x, 2) for x in load_before],
        "noise": results.pop("noise"),
        "command": " ".join(["python -m bench.real_stack", *(argv or sys.argv[1:])]),
    }
    m = meta["machine"]
    print(
        f"\n{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, "
        f"kernel {m['kernel']}, Python {m['python']}, {meta['browser']}"
    )
    print(f"load average before: {meta['loadavg_before']}; foreign CPU per section:")
    for section, n in meta["noise"].items():
        top = ", ".join(f"{k} {v}%" for k, v in n["top"].items()) or "none"
        print(
            f"  {section}: {n['seconds']} s, foreign CPU mean {n['foreign_cpu_mean_pct']}% "
            f"max {n['foreign_cpu_max_pct']}% of one core ({top})"
        )
    if "cold" in results:
        print(f"\n### Cold start ({options.runs} interleaved runs each)\n")
        print(report_cold(results["cold"]))
    if "warm" in results:
        print(f"\n### Warm ensure (wrk, {options.seconds:g} s runs, median of {options.repeats})\n")
        print(report_warm(results["warm"], clients))
    if "events" in results:
        print("\n### Readiness events\n")
        print(report_events(results["events"]))
    if "gate" in results:
        g = results["gate"]
        print(
            f"\n### nginx gate\n\nwarm /json/version, median of {g['requests']}: direct "
            f"{g['direct_median_ms']:.2f} ms, gated {g['gated_median_ms']:.2f} ms "
            f"(+{g['gated_minus_direct_ms']:.2f} ms)"
        )
    if "memory" in results:
        print("\n### Memory\n")
        print(report_memory(results["memory"]))
        m = results["memory"]
        print(
            f"\nDuring {m['requests']:,} warm ensures ({m['requests_seconds']} s), the sidecar "
            f"asked: {m['asked_during_requests'] or 'nothing'}"
        )
    if "timeline" in results:
        t = results["timeline"]
        print(f"\n### Timeline: {t['png']} (ensure answered at {t['ensure_answered_ms']:.0f} ms)")
    rows = targets(results, clients)
    if rows:
        print("\n### Targets (issues 6 and 12)\n")
        print(table(["figure", "measured", "target", ""], rows))
    options.out.mkdir(parents=True, exist_ok=True)
    for section, data in results.items():
        path = options.out / f"{section}.json"
        path.write_text(json.dumps({**meta, section: data}, indent=2) + "\n")
    print(f"\nwrote {', '.join(str(options.out / s) + '.json' for s in results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
