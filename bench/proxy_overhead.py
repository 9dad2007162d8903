"""CDP through the activation proxy vs. direct, on a real headless Chromium.

Starts Debian's chromium headless on a free internal port and the proxy (the
real `ActivationProxy` with a no-op ensure) in a process of its own, as the
sidecar would be, on a free public port. Checks that CDP discovery through the
proxy names the proxy's port, then connects Playwright over CDP both ways to the
same page and, N times:
  evaluate    1,000 `Runtime.evaluate("1+1")` per path on a Playwright CDP session,
              direct and proxy alternating call by call: µs per round trip
  raw ws      the same over a bare aiohttp websocket to the page target (no driver hop)
  screenshot  `Page.captureScreenshot` (PNG) of a 2560x1600 canvas of noise: MB/s of base64
  bulk        `Runtime.evaluate` returning a 16 MiB string by value: MB/s
Prints a table of medians and the proxy/direct ratios and writes JSON. Not a
test: no asserts on figures.

    .venv/bin/python -m bench.proxy_overhead [--runs 5] [--json bench/out/proxy.json]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import CDPSession, async_playwright

from browser_stack.proxy import ROUTE_GATES, ActivationProxy, Route
from browser_stack.stack import Gate
from tests.helpers import free_port

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
EVALS = 1000
SHOTS = 5
BULK = 5
BULK_CHARS = 16 * 1024 * 1024
GUARD_S = 60.0  # a hung capture fails the run instead of stalling it
WIDTH, HEIGHT = 2560, 1600
NOISE_PAGE = f"""<html><body style="margin:0"><canvas id="c" width="{WIDTH}" height="{HEIGHT}">
</canvas><script>
const c = document.getElementById("c").getContext("2d");
const img = c.createImageData({WIDTH}, {HEIGHT});
const words = new Uint32Array(img.data.buffer);
for (let i = 0; i < words.length; i += 16384)
  crypto.getRandomValues(words.subarray(i, Math.min(i + 16384, words.length)));
for (let i = 3; i < img.data.length; i += 4) img.data[i] = 255;
c.putImageData(img, 0, 0);
window.big = "x".repeat({BULK_CHARS});
</script></body></html>"""


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=5) as response:
        return dict(json.loads(response.read()))


def wait_json(url: str, timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return get_json(url)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- the proxy process


async def serve_proxy(upstream_port: int) -> None:
    async def ensure(gates: frozenset[Gate]) -> None:
        return None

    route = Route("cdp", LOOPBACK, 0, LOOPBACK, upstream_port, ROUTE_GATES["cdp"])
    proxy = ActivationProxy([route], ensure, ensure_timeout_s=30)
    await proxy.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(proxy.ports()["cdp"], flush=True)
    await stop.wait()
    stats = proxy.stats()["cdp"].to_dict()
    await proxy.close()
    print(json.dumps(stats), flush=True)


def start_proxy(upstream_port: int, loop: str) -> tuple[subprocess.Popen[str], int]:
    serve = ["--serve-proxy", str(upstream_port), "--loop", loop]
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.proxy_overhead", *serve],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def stop_proxy(process: subprocess.Popen[str]) -> dict[str, Any]:
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=10)
    return dict(json.loads(out.strip().splitlines()[-1]))


# -- measurements
#
# Both paths drive the same page (one renderer, in front), each over its own
# Playwright connection: the only difference is the proxy. Round trips
# alternate call by call, so drift on a busy 2-core machine hits both alike.

EVALUATE = {"expression": "1+1"}


async def playwright_rtt(session: CDPSession) -> float:
    began = time.perf_counter()
    await session.send("Runtime.evaluate", EVALUATE)
    return (time.perf_counter() - began) * 1e6


class RawCdp:
    """A bare websocket to the page target: the same round trip without
    Playwright's driver process in between, so the proxy's share shows more."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def rtt(self) -> float:
        self.next_id += 1
        n = self.next_id
        message = json.dumps({"id": n, "method": "Runtime.evaluate", "params": EVALUATE})
        began = time.perf_counter()
        await self.ws.send_str(message)
        while json.loads((await self.ws.receive()).data).get("id") != n:
            pass
        return (time.perf_counter() - began) * 1e6


async def alternate(
    calls: Mapping[str, Callable[[], Awaitable[float]]], count: int, out: dict[str, list[float]]
) -> None:
    modes = list(calls)
    for i in range(count):
        for mode in modes if i % 2 == 0 else modes[::-1]:
            out[mode].append(await calls[mode]())


async def screenshot_mb_s(session: CDPSession) -> tuple[float, int]:
    size = 0
    began = time.perf_counter()
    for _ in range(SHOTS):
        answer = await asyncio.wait_for(
            session.send("Page.captureScreenshot", {"format": "png"}), GUARD_S
        )
        size += len(answer["data"])
    return size / (time.perf_counter() - began) / 1e6, size // SHOTS


async def bulk_mb_s(session: CDPSession) -> float:
    size = 0
    began = time.perf_counter()
    for _ in range(BULK):
        answer = await session.send(
            "Runtime.evaluate", {"expression": "window.big", "returnByValue": True}
        )
        size += len(answer["result"]["value"])
    return size / (time.perf_counter() - began) / 1e6


async def measure(ports: dict[str, int], runs: int) -> dict[str, Any]:
    modes = tuple(ports)
    figures: dict[str, dict[str, list[float]]] = {
        name: {mode: [] for mode in modes}
        for name in ("evals", "eval_medians", "raw_evals", "shots", "bulks")
    }
    shot_size = 0
    async with async_playwright() as playwright, aiohttp.ClientSession() as http:
        sessions: dict[str, CDPSession] = {}
        raw: dict[str, RawCdp] = {}
        target_id = ""
        for mode, port in ports.items():
            browser = await playwright.chromium.connect_over_cdp(f"http://{LOOPBACK}:{port}")
            context = browser.contexts[0]
            if not target_id:  # the first connection makes the page
                page = await context.new_page()
                await page.set_viewport_size({"width": WIDTH, "height": HEIGHT})
                await page.set_content(NOISE_PAGE)
                await page.bring_to_front()  # a background tab draws no frames
                sessions[mode] = await context.new_cdp_session(page)
                info = await sessions[mode].send("Target.getTargetInfo")
                target_id = info["targetInfo"]["targetId"]
            else:  # the others find it among the pages they see
                for page in context.pages:
                    session = await context.new_cdp_session(page)
                    info = await session.send("Target.getTargetInfo")
                    if info["targetInfo"]["targetId"] == target_id:
                        sessions[mode] = session
                        break
                    await session.detach()
            raw[mode] = RawCdp(
                await http.ws_connect(
                    f"ws://{LOOPBACK}:{port}/devtools/page/{target_id}", max_msg_size=0
                )
            )
        pw_calls = {mode: functools.partial(playwright_rtt, sessions[mode]) for mode in modes}
        raw_calls = {mode: raw[mode].rtt for mode in modes}
        warm: dict[str, list[float]] = {mode: [] for mode in modes}
        await alternate(pw_calls, 200, warm)  # not counted
        await alternate(raw_calls, 200, warm)
        for mode in modes:
            await screenshot_mb_s(sessions[mode])
        for run in range(runs):
            order = modes if run % 2 == 0 else modes[::-1]
            batch: dict[str, list[float]] = {mode: [] for mode in modes}
            await alternate(pw_calls, EVALS, batch)
            for mode in modes:
                figures["evals"][mode] += batch[mode]
                figures["eval_medians"][mode].append(statistics.median(batch[mode]))
            await alternate(raw_calls, EVALS, figures["raw_evals"])
            for mode in order:
                rate, shot_size = await screenshot_mb_s(sessions[mode])
                figures["shots"][mode].append(rate)
            for mode in order:
                figures["bulks"][mode].append(await bulk_mb_s(sessions[mode]))
        for cdp in raw.values():
            await cdp.ws.close()
    return {**figures, "shot_size": shot_size}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "proxy.json")
    parser.add_argument(
        "--loop",
        choices=("asyncio", "uvloop"),
        default="asyncio",
        help="the proxy process's event loop (uvloop must be installed; not a dependency)",
    )
    parser.add_argument("--serve-proxy", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_proxy:
        if args.loop == "uvloop":
            import uvloop

            uvloop.install()
        asyncio.run(serve_proxy(args.serve_proxy))
        return 0

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("no chromium on PATH", file=sys.stderr)
        return 2
    profile = tempfile.mkdtemp(prefix="bs-bench-proxy-")
    internal = free_port()
    browser = subprocess.Popen(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--remote-debugging-port={internal}",
            f"--user-data-dir={profile}",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-quic",
            "about:blank",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    proxy_process: subprocess.Popen[str] | None = None
    try:
        direct_version = wait_json(f"http://{LOOPBACK}:{internal}/json/version")
        proxy_process, public = start_proxy(internal, args.loop)
        version = get_json(f"http://{LOOPBACK}:{public}/json/version")
        ws_url = version["webSocketDebuggerUrl"]
        discovery = {
            "browser": version["Browser"],
            "direct_ws": direct_version["webSocketDebuggerUrl"],
            "proxy_ws": ws_url,
            "names_public_port": ws_url.startswith(f"ws://{LOOPBACK}:{public}/devtools/browser/"),
        }
        figures = asyncio.run(measure({"direct": internal, "proxy": public}, args.runs))
        proxy_stats = stop_proxy(proxy_process)
        proxy_process = None
    finally:
        if proxy_process is not None:
            proxy_process.kill()
        os.killpg(browser.pid, signal.SIGTERM)
        browser.wait(timeout=10)
        shutil.rmtree(profile, ignore_errors=True)

    def med(values: list[float]) -> float:
        return statistics.median(values)

    def p95(values: list[float]) -> float:
        return statistics.quantiles(values, n=20)[-1]

    evals, shots, bulks = figures["evals"], figures["shots"], figures["bulks"]
    raw_evals = figures["raw_evals"]
    rows = {
        "evaluate median us": (med(evals["direct"]), med(evals["proxy"]), "<= 1.05"),
        "evaluate p95 us": (p95(evals["direct"]), p95(evals["proxy"]), ""),
        "evaluate mean us": (
            statistics.fmean(evals["direct"]),
            statistics.fmean(evals["proxy"]),
            "",
        ),
        "raw ws median us": (med(raw_evals["direct"]), med(raw_evals["proxy"]), ""),
        "raw ws p95 us": (p95(raw_evals["direct"]), p95(raw_evals["proxy"]), ""),
        "screenshot MB/s": (med(shots["direct"]), med(shots["proxy"]), ">= 0.9"),
        "bulk 16 MiB MB/s": (med(bulks["direct"]), med(bulks["proxy"]), ">= 0.9"),
    }
    report = {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "browser": discovery["browser"],
        "runs": args.runs,
        "proxy_loop": args.loop,
        "evals_per_run": EVALS,
        "screenshots_per_run": SHOTS,
        "screenshot_base64_bytes": figures["shot_size"],
        "discovery": discovery,
        "results": {
            name: {"direct": round(d, 1), "proxy": round(p, 1), "ratio": round(p / d, 3)}
            for name, (d, p, _) in rows.items()
        },
        "per_run": {
            "evaluate_median_us": {
                k: [round(v, 1) for v in vs] for k, vs in figures["eval_medians"].items()
            },
            "screenshot_mb_s": {k: [round(v, 1) for v in vs] for k, vs in shots.items()},
            "bulk_mb_s": {k: [round(v, 1) for v in vs] for k, vs in bulks.items()},
        },
        "proxy_stats": proxy_stats,
    }
    print(
        f"CDP through the activation proxy vs direct, {args.runs} interleaved runs "
        f"({report['machine']}, {report['browser']}, proxy on {args.loop})"
    )
    print(
        f"discovery through the proxy: {ws_url} (names the public port: "
        f"{discovery['names_public_port']})"
    )
    print(f"{'metric':<20} {'direct':>9} {'proxy':>9} {'ratio':>7}  target")
    for name, (d, p, target) in rows.items():
        print(f"{name:<20} {d:>9.1f} {p:>9.1f} {p / d:>7.3f}  {target}")
    print(
        f"proxy counted: {proxy_stats['accepted']} connections, "
        f"{proxy_stats['bytes_up']} B up, {proxy_stats['bytes_down']} B down"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
