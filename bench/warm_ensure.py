"""Warm ensure: wrk against POST /ensure with the stack up and against a bare aiohttp
handler (the floor of any aiohttp endpoint), interleaved, and what the sidecar asked."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import statistics
import sys
from pathlib import Path
from typing import Any

from .private_stack import ENSURE, Bench
from .report import table

WARM_SETTLE_S = 10.0
POST_LUA = """\
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
"""

_WRK_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def parse_wrk(text: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s*{pct}%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)
        if match is None:
            raise ValueError(f"no {pct}% latency in wrk's output:\n{text}")
        return round(float(match[1]) * _WRK_UNITS[match[2]], 3)

    rps = re.search(r"^Requests/sec:\s+([\d.]+)", text, re.M)
    total = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m)", text, re.M)
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text
    )
    if rps is None or total is None:
        raise ValueError(f"cannot read wrk's output:\n{text}")
    return {
        "p50_ms": latency("50"),
        "p75_ms": latency("75"),
        "p90_ms": latency("90"),
        "p99_ms": latency("99"),
        "rps": round(float(rps[1]), 1),
        "requests": int(total[1]),
        "non_2xx": int(non_2xx[1]) if non_2xx else 0,
        "socket_errors": sum(int(g) for g in errors.groups()) if errors else 0,
    }


async def wrk(url: str, connections: int, seconds: float, lua: Path | None) -> dict[str, float]:
    args = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"]
    if lua is not None:
        args += ["-s", str(lua)]
    process = await asyncio.create_subprocess_exec(
        *args, url, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed: {out.decode(errors='replace')}")
    return parse_wrk(out.decode())


# A bare aiohttp handler on this machine, now: how fast the machine is running
# during this section (this VM's speed drifts by up to 2x within minutes).
# At /post, the same exchange as a warm ensure with nothing behind it: a POST whose
# body is read, answered with a copy of a real ensure answer (the HTTP part of
# what an ensure costs, apart from what the sidecar does).
BARE_APP = """\
import sys
from aiohttp import web
ANSWER = open(sys.argv[2]).read()
async def ok(request):
    return web.json_response({"ok": True})
async def post(request):
    await request.read()
    return web.Response(text=ANSWER, content_type="application/json")
app = web.Application()
app.router.add_get("/", ok)
app.router.add_post("/post", post)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


@contextlib.asynccontextmanager
async def bare_app(answer: Path) -> Any:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", BARE_APP, str(port), str(answer)
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            await asyncio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        await process.wait()


def sidecar_counts(metrics: dict[str, float]) -> dict[str, float]:
    """What the sidecar asked: probes by purpose, XML-RPC calls by method."""
    out: dict[str, float] = {}
    for key, value in metrics.items():
        if key.startswith("browser_stack_probes_total{"):
            purpose = re.search(r'purpose="([^"]+)"', key)
            name = f"probes {purpose[1] if purpose else '?'}"
        elif key.startswith("browser_stack_supervisor_calls_total{"):
            method = re.search(r'method="supervisor\.([^"]+)"', key)
            name = f"xmlrpc {method[1] if method else '?'}"
        elif key.startswith('browser_stack_ensure_requests_total{outcome="warm"}'):
            name = "warm answers"
        elif key.startswith("browser_stack_ensure_requests_total{"):
            name = "other answers"
        else:
            continue
        out[name] = out.get(name, 0.0) + value
    return out


def counts_between(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0.0) for k, v in after.items() if v - before.get(k, 0.0)}


def paired_ratio(runs: list[dict[str, Any]], against: list[dict[str, Any]], figure: str) -> float:
    """Each run against the run of the other kind next to it, then the median."""
    return round(
        statistics.median(a[figure] / b[figure] for a, b in zip(runs, against, strict=True)), 3
    )


async def section_warm(
    bench: Bench, seconds: float, clients: tuple[int, ...], repeats: int
) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk not found (apt-get install wrk, or scripts/install-deps.sh --dev)")
    lua = bench.root / "post_ensure.lua"
    lua.write_text(POST_LUA)
    await bench.ensure()
    # Chromium keeps a core busy for a few seconds after it answers CDP.
    await asyncio.sleep(WARM_SETTLE_S)
    await wrk(bench.base + ENSURE, 16, 2, lua)  # warm-up, not counted
    raw: dict[str, list[dict[str, Any]]] = {}
    answer = bench.root / "ensure-answer.json"
    async with bench.http.post(bench.base + ENSURE, json={}) as response:
        answer.write_bytes(await response.read())
    async with bare_app(answer) as bare_url:
        await wrk(bare_url, 16, 2, None)  # warm-up, not counted
        for repeat in range(repeats):
            for c in clients:
                # Rotate which goes first so none always runs on a hotter machine.
                runs = [
                    ("ensure", bench.base + ENSURE, lua),
                    ("bare", bare_url, None),
                    ("bare-post", bare_url + "post", lua),
                ]
                shift = (repeat + c) % len(runs)
                for name, url, script in runs[shift:] + runs[:shift]:
                    before = sidecar_counts(await bench.metrics())
                    figures: dict[str, Any] = await wrk(url, c, seconds, script)
                    figures["asked"] = counts_between(before, sidecar_counts(await bench.metrics()))
                    raw.setdefault(f"{name} c={c}", []).append(figures)
                    print(
                        f"  warm {name:9} c={c:<3} p50 {figures['p50_ms']:.2f} ms"
                        f"  p99 {figures['p99_ms']:.2f} ms  {figures['rps']:.0f} req/s"
                        + (f"  asked {figures['asked']}" if name == "ensure" else ""),
                        flush=True,
                    )
    results: dict[str, dict[str, Any]] = {}
    for key, runs in raw.items():
        # Each figure's median over the repeats; what was asked, summed.
        results[key] = {
            k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0] if k != "asked"
        }
        asked: dict[str, float] = {}
        for r in runs:
            for k, v in r["asked"].items():
                asked[k] = asked.get(k, 0.0) + v
        results[key]["asked"] = asked
        results[key]["runs"] = len(runs)
    for c in clients:
        e, ensure_runs, bare_runs = (
            results[f"ensure c={c}"],
            raw[f"ensure c={c}"],
            raw[f"bare c={c}"],
        )
        post_runs = raw[f"bare-post c={c}"]
        for figure, key in (("rps", "rps"), ("p50_ms", "p50"), ("p99_ms", "p99")):
            e[f"{key}_vs_bare"] = paired_ratio(ensure_runs, bare_runs, figure)
        e["rps_vs_bare_post"] = paired_ratio(ensure_runs, post_runs, "rps")
        results[f"bare-post c={c}"]["rps_vs_bare"] = paired_ratio(post_runs, bare_runs, "rps")
    return {"seconds": seconds, "repeats": repeats, "results": results, "all_runs": raw}



def report_warm(r: dict[str, Any], clients: tuple[int, ...]) -> str:
    rows = []
    for c in clients:
        e, b = r["results"][f"ensure c={c}"], r["results"][f"bare c={c}"]
        asked = ", ".join(f"{k} {v:.0f}" for k, v in sorted(e["asked"].items()))
        rows.append(
            [
                str(c),
                f"{e['p50_ms']:.2f}",
                f"{e['p99_ms']:.2f}",
                f"{e['rps']:.0f}",
                f"{b['p50_ms']:.2f}",
                f"{b['p99_ms']:.2f}",
                f"{b['rps']:.0f}",
                f"{e['p50_vs_bare']:.2f}",
                f"{e['p99_vs_bare']:.2f}",
                f"{e['rps_vs_bare']:.2f}",
                f"{r['results'][f'bare-post c={c}']['rps_vs_bare']:.2f}",
                f"{e['rps_vs_bare_post']:.2f}",
                asked,
            ]
        )
    return table(
        [
            "clients",
            "ensure p50 ms",
            "p99 ms",
            "req/s",
            "bare p50 ms",
            "p99 ms",
            "req/s",
            "p50 / bare",
            "p99 / bare",
            "req/s / bare",
            "bare POST, same answer: req/s / bare",
            "ensure req/s / bare POST",
            "what the sidecar asked (all runs)",
        ],
        rows,
    )
