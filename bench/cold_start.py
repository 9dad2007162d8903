"""Cold start on the real stack: ensure (all, and cdp only) vs. the hand method.

Runs the real five programs and the sidecar under a private supervisord
(scripts/local_stack.py), then, interleaved N times:
  ensure-all   POST /ensure                      (stack stopped before)
  ensure-cdp   POST /ensure {"needs": ["cdp"]}   (stack stopped before)
  hand         `supervisorctl start NAME` for each of the five, one after
               another, then poll the passive status until all five are ready
Prints a table of medians and spread and writes JSON. Not a test: no asserts.

    .venv/bin/python bench/cold_start.py [--runs 5] [--json bench/out/cold_start.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import local_stack  # noqa: E402

PROGRAMS = local_stack.PROGRAMS


def _call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(base + path, data=data, method=method)
    with urllib.request.urlopen(request, timeout=120) as response:
        return dict(json.loads(response.read()))


def _stop(base: str) -> None:
    _call(base, "POST", "/v1/browser-stack/stop")
    while any(
        p["state"] != "STOPPED"
        for p in _call(base, "GET", "/v1/browser-stack/status")["programs"].values()
    ):
        time.sleep(0.05)
    time.sleep(0.5)  # let the kernel reclaim ports and the X lock


def ensure(base: str, needs: list[str] | None) -> float:
    _stop(base)
    began = time.perf_counter()
    answer = _call(base, "POST", "/v1/browser-stack/ensure", {"needs": needs} if needs else {})
    elapsed = time.perf_counter() - began
    assert answer["ready"], answer
    return elapsed * 1000


def hand(base: str, root: Path) -> float:
    _stop(base)
    ctl = [sys.executable, "-m", "supervisor.supervisorctl", "-c", str(root / "supervisord.conf")]
    began = time.perf_counter()
    for name in PROGRAMS:
        subprocess.run([*ctl, "start", name], check=True, capture_output=True)
    while not all(
        p["ready"] for p in _call(base, "GET", "/v1/browser-stack/status")["programs"].values()
    ):
        time.sleep(0.005)
    return (time.perf_counter() - began) * 1000


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median_ms": round(statistics.median(values), 1),
        "min_ms": round(min(values), 1),
        "max_ms": round(max(values), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "cold_start.json")
    parser.add_argument("--listen", default="127.0.0.1:8119")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bs-bench-"))
    process = local_stack.start(root, listen=args.listen)
    base = f"http://{args.listen}"
    samples: dict[str, list[float]] = {"ensure-all": [], "ensure-cdp": [], "hand": []}
    try:
        local_stack.wait_healthy(base, root, process.pid)
        ensure(base, None)  # warm the page cache once; not counted
        for _ in range(args.runs):
            samples["ensure-all"].append(ensure(base, None))
            samples["ensure-cdp"].append(ensure(base, ["cdp"]))
            samples["hand"].append(hand(base, root))
        _stop(base)
    finally:
        local_stack.stop(root, process.pid)
    results = {name: summary(values) for name, values in samples.items()}
    hand_median = results["hand"]["median_ms"]
    report = {
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores",
        "runs": args.runs,
        "results": results,
        "samples_ms": {k: [round(v, 1) for v in vs] for k, vs in samples.items()},
        "ratios": {
            "ensure-all / hand": round(results["ensure-all"]["median_ms"] / hand_median, 3),
            "ensure-cdp / hand": round(results["ensure-cdp"]["median_ms"] / hand_median, 3),
        },
    }
    print(f"cold start, real stack, {args.runs} interleaved runs ({report['machine']})")
    print(f"{'method':<12} {'median ms':>10} {'min':>8} {'max':>8}")
    for name, r in results.items():
        print(f"{name:<12} {r['median_ms']:>10.0f} {r['min_ms']:>8.0f} {r['max_ms']:>8.0f}")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio:.3f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
