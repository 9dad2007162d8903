"""Memory and metrics on the real stack: what it costs, stopped and started."""

from __future__ import annotations

import json
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from .conftest import PROGRAMS, Stack, assert_all_stopped, call, ensure

MIB = 1024 * 1024


def get_text(stack: Stack, path: str) -> str:
    with urllib.request.urlopen(stack.base_url + path, timeout=30) as r:
        return str(r.read().decode())


def metric(text: str, name: str, **labels: str) -> float:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def test_memory_stopped_vs_started_and_metrics(stack: Stack) -> None:
    status, stopped = call(stack, "GET", "/v1/browser-stack/memory?sample=stopped")
    assert status == 200, stopped
    assert all(p["processes"] == 0 for p in stopped["programs"].values())
    assert stopped["total"]["uss_bytes"] == 0
    metrics_before = get_text(stack, "/metrics")

    ensure(stack)
    status, started = call(stack, "GET", "/v1/browser-stack/memory?sample=started")
    assert status == 200, started
    for name in PROGRAMS:
        assert started["programs"][name]["processes"] >= 1, name
        assert started["programs"][name]["uss_bytes"] > 0, name
    browser = started["programs"]["browser"]
    assert browser["processes"] >= 3  # Chromium and its helpers
    assert 20 * MIB < browser["uss_bytes"] < 2000 * MIB
    assert browser["uss_bytes"] <= browser["pss_bytes"] <= browser["rss_bytes"]
    assert started["sidecar"]["uss_bytes"] > 0

    markdown = get_text(stack, "/v1/browser-stack/memory?sample=started&format=markdown")
    assert "| program | state | processes | USS MiB | PSS MiB | RSS MiB |" in markdown
    assert "| browser | " in markdown
    print("\n" + markdown)

    text = get_text(stack, "/v1/browser-stack/status?format=text")
    assert "browser" in text and "ready" in text and "MiB" in text
    print(text)

    metrics_after = get_text(stack, "/metrics")
    cold = "browser_stack_ensure_requests_total"
    assert (
        metric(metrics_after, cold, outcome="cold")
        == metric(metrics_before, cold, outcome="cold") + 1
    )
    assert metric(metrics_after, "browser_stack_program_ready", program="browser") == 1
    assert (
        metric(metrics_after, "browser_stack_program_memory_bytes", program="browser", kind="uss")
        > 0
    )
    assert (
        metric(metrics_after, "browser_stack_start_duration_seconds_count", program="browser") >= 1
    )

    status, out = call(stack, "POST", "/v1/browser-stack/stop")
    assert status == 200, out
    assert_all_stopped(stack)
    (stack.root / "memory-stopped.json").write_text(json.dumps(stopped))
    (stack.root / "memory-started.json").write_text(json.dumps(started))
