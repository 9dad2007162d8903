"""deploy/kubernetes/aio-sandbox-pod.yaml: valid against Kubernetes' own schemas
(kubernetes-validate, strict: no unknown fields), and what it promises: the opt-in
env, probes that cannot wake the stack, memory requests for the lazy idle state."""

from __future__ import annotations

import os
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
MANIFEST = REPO / "deploy" / "kubernetes" / "aio-sandbox-pod.yaml"
PODMONITOR = REPO / "deploy" / "kubernetes" / "podmonitor.yaml"
NGINX = REPO / "deploy" / "nginx" / "browser-stack.conf"
# the oldest still-common minor and the newest the validator ships
VERSIONS = ("1.29.0", "latest")
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def required(module: str) -> ModuleType:
    """A dev extra (kubernetes-validate brings PyYAML): skip without it, fail in CI."""
    try:
        return __import__(module)
    except ImportError:
        reason = f"{module} not installed (PyPI kubernetes-validate, a dev extra)"
        if os.environ.get("BROWSER_STACK_E2E_REQUIRED") == "1":
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)


def mib(quantity: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(Ki|Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * UNITS[unit] / 2**20


@pytest.fixture(scope="module")
def pod() -> dict[str, Any]:
    yaml = required("yaml")
    [doc] = list(yaml.safe_load_all(MANIFEST.read_text()))
    assert isinstance(doc, dict)
    return doc


@pytest.mark.parametrize("version", VERSIONS)
def test_schema_valid_strict(pod: dict[str, Any], version: str) -> None:
    kubernetes_validate = required("kubernetes_validate")
    if version == "latest":
        version = kubernetes_validate.latest_version()
    kubernetes_validate.validate(pod, version, strict=True)


def test_schema_check_really_rejects(pod: dict[str, Any]) -> None:
    import copy

    kubernetes_validate = required("kubernetes_validate")

    bad = copy.deepcopy(pod)
    bad["spec"]["containers"][0]["env"][0]["valu"] = "typo"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, kubernetes_validate.latest_version(), strict=True)


def test_opt_in_env(pod: dict[str, Any]) -> None:
    [container] = pod["spec"]["containers"]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env["LAZY_START_BROWSER_STACK"] == "true"  # a string, as env values must be


def test_liveness_asks_healthz_and_readiness_readyz_through_the_gateway(
    pod: dict[str, Any],
) -> None:
    [container] = pod["spec"]["containers"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports["http"] == 8080
    paths = {
        "startupProbe": "/browser-stack/healthz",
        "livenessProbe": "/browser-stack/healthz",
        # healthz passed on a sidecar that could not reach supervisord
        "readinessProbe": "/browser-stack/readyz",
    }
    for kind, path in paths.items():
        probe = container[kind]
        assert set(probe) - {"periodSeconds", "timeoutSeconds", "failureThreshold"} == {
            "httpGet"
        }, kind
        assert probe["httpGet"] == {"path": path, "port": ports["http"]}, kind
    # ... which the shipped gateway snippet sends to the sidecar's /healthz and
    # /readyz (the prefix is stripped), which never wake the stack
    assert re.search(
        r"location /browser-stack/ \{\s*proxy_pass http://127\.0\.0\.1:8110/;", NGINX.read_text()
    )


def test_memory_sized_for_the_lazy_idle_state(pod: dict[str, Any]) -> None:
    [container] = pod["spec"]["containers"]
    resources = container["resources"]
    request = mib(resources["requests"]["memory"])
    limit = mib(resources["limits"]["memory"])
    # idle: ~143-178 MiB (image, stack stopped) + the sidecar; awake: + the five (~550 MiB PSS)
    assert 200 <= request <= 320, request
    assert limit >= 178 + 45 + 550 + 256, limit


def test_prometheus_finds_the_sidecars_metrics_through_the_gateway(pod: dict[str, Any]) -> None:
    """The scrape annotations and the PodMonitor name the gateway's port and the
    route to the sidecar's /metrics (the container tier scrapes that route)."""
    yaml = required("yaml")
    [container] = pod["spec"]["containers"]
    port = {p["name"]: p["containerPort"] for p in container["ports"]}["http"]
    notes = pod["metadata"]["annotations"]
    assert notes["prometheus.io/scrape"] == "true"
    assert (notes["prometheus.io/port"], notes["prometheus.io/path"]) == (
        str(port),
        "/browser-stack/metrics",
    )
    [monitor] = list(yaml.safe_load_all(PODMONITOR.read_text()))
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": pod["metadata"]["labels"]["app.kubernetes.io/name"]
    }
    [endpoint] = monitor["spec"]["podMetricsEndpoints"]
    assert (endpoint["port"], endpoint["path"]) == ("http", "/browser-stack/metrics")
    assert "sum(browser_stack_awake)" in PODMONITOR.read_text()


def test_the_docs_show_the_podmonitor_as_shipped() -> None:
    yaml = required("yaml")
    doc = (REPO / "docs" / "aio-image.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, flags=re.S)
    shown = [b for b in blocks if "kind: PodMonitor" in b]
    assert len(shown) == 1
    assert yaml.safe_load(shown[0]) == yaml.safe_load(PODMONITOR.read_text())
