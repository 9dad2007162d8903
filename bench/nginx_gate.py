"""nginx's auth_request gate (deploy/nginx) in front of Chromium: a warm gated
request against the same request straight to Chromium."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from .private_stack import Bench
from .warm_ensure import WARM_SETTLE_S


async def section_gate(bench: Bench, requests: int = 300) -> dict[str, Any]:
    """A warm gated request through nginx (deploy/nginx, as docs/aio-image.md
    describes) against the same request straight to Chromium, alternating, each
    on a fresh connection as curl makes them."""
    from tests.image.gateway import Upstreams, nginx_binary, running_gateway

    if nginx_binary() is None:
        raise RuntimeError("nginx not found (scripts/install-deps.sh --dev)")
    await bench.ensure()
    await asyncio.sleep(WARM_SETTLE_S)
    cdp = f"http://127.0.0.1:{bench.settings.cdp_port}"
    sidecar = bench.base.removeprefix("http://")
    times: dict[str, list[float]] = {"direct": [], "gated": []}
    with running_gateway(bench.root / "gateway", Upstreams(sidecar=sidecar)) as gateway:
        urls = {"direct": cdp + "/json/version", "gated": gateway.url + "/cdp/json/version"}
        for i in range(requests + 20):
            for name in ("direct", "gated") if i % 2 else ("gated", "direct"):
                began = time.perf_counter()
                async with bench.http.get(urls[name], headers={"Connection": "close"}) as response:
                    await response.read()
                    assert response.status == 200, (name, response.status)
                if i >= 20:  # the first ones warm nginx and the connection pools up
                    times[name].append((time.perf_counter() - began) * 1000)
    direct = statistics.median(times["direct"])
    gated = statistics.median(times["gated"])
    print(f"  gate: direct {direct:.2f} ms, gated {gated:.2f} ms (median of {requests})")
    return {
        "requests": requests,
        "direct_median_ms": round(direct, 3),
        "gated_median_ms": round(gated, 3),
        "gated_minus_direct_ms": round(gated - direct, 3),
        "direct_p90_ms": round(statistics.quantiles(times["direct"], n=10)[-1], 3),
        "gated_p90_ms": round(statistics.quantiles(times["gated"], n=10)[-1], 3),
    }
