"""deploy/kubernetes/aio-sandbox-pod.yaml under `podman kube play`, with its image
overridden by the one the tier built: its env, memory limit and probes apply, an
ensure through the pod's port works, and `podman kube down` leaves nothing behind.

podman 4.3 turns the livenessProbe into the container's health check and ignores the
readinessProbe and startupProbe; the test asks the readinessProbe's endpoint itself,
as a kubelet would (an HTTP GET, success is 200-399)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..helpers import PREFIX, PROGRAMS, free_port, request, wait_for
from .conftest import containers, states

MANIFEST = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes" / "aio-sandbox-pod.yaml"
UNITS = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def manifest_for(image: str, name: str, port: int) -> dict[str, Any]:
    """The shipped manifest with the image, the pod's name and a host port for its
    gateway (podman publishes a containerPort only with a hostPort) changed."""
    import yaml

    [pod] = list(yaml.safe_load_all(MANIFEST.read_text()))
    pod["metadata"]["name"] = name
    pod["metadata"].setdefault("labels", {})["browser-stack-test"] = "1"
    [container] = pod["spec"]["containers"]
    container["image"] = image
    [http] = [p for p in container["ports"] if p["name"] == "http"]
    http.update(hostPort=port, hostIP="127.0.0.1")
    assert isinstance(pod, dict)
    return pod


@pytest.fixture
def played(image: str, tmp_path: Path) -> Iterator[tuple[dict[str, Any], str]]:
    import yaml

    name = containers.unique("pod")
    pod = manifest_for(image, name, free_port())
    path = tmp_path / "pod.yaml"
    path.write_text(yaml.safe_dump(pod))
    try:
        containers.podman("kube", "play", str(path), timeout=300)
        yield pod, str(path)
    finally:
        containers.podman("kube", "down", str(path), check=False, timeout=120)
        containers.podman("pod", "rm", "-f", "-t", "0", name, check=False)


def probe_ok(url: str, probe: dict[str, Any]) -> bool:
    get = probe["httpGet"]
    try:
        answer = request(url, "GET", get["path"], timeout=probe.get("timeoutSeconds", 1))
    except OSError:
        return False
    return 200 <= answer.status < 400


def test_kube_play_the_shipped_pod(played: tuple[dict[str, Any], str]) -> None:
    pod, path = played
    name = pod["metadata"]["name"]
    [spec] = pod["spec"]["containers"]
    [http] = [p for p in spec["ports"] if p["name"] == "http"]
    url = f"http://127.0.0.1:{http['hostPort']}"
    container = f"{name}-{spec['name']}"

    # ready through its readinessProbe, asked as the kubelet asks it
    wait_for(
        lambda: probe_ok(url, spec["readinessProbe"]),
        timeout=120,
        what="the readinessProbe",
        interval=0.5,
    )
    code, body = request(url, "GET", spec["readinessProbe"]["httpGet"]["path"])
    assert code == 200 and body["ok"] is True, body

    # liveness: podman's health check, made from the livenessProbe, passes
    [inspected] = containers.podman_json("inspect", container)
    liveness = spec["livenessProbe"]["httpGet"]
    test = " ".join(inspected["Config"]["Healthcheck"]["Test"])
    assert f"http://localhost:{liveness['port']}{liveness['path']}" in test, test
    checked = containers.podman("healthcheck", "run", container, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    # the env applies: lazy, nothing of the five at boot; the memory limit too
    env = dict(item.split("=", 1) for item in inspected["Config"]["Env"])
    for item in spec["env"]:
        assert env[item["name"]] == item["value"], item
    assert states(url) == dict.fromkeys(PROGRAMS, "STOPPED")
    limit = spec["resources"]["limits"]["memory"]
    assert inspected["HostConfig"]["Memory"] == int(limit[:-2]) * UNITS[limit[-2:]]

    # an ensure through the pod's port
    code, out = request(
        url, "POST", f"/browser-stack{PREFIX}/ensure", {"needs": ["cdp"]}, timeout=90
    )
    assert code == 200 and out["ready"] is True, out

    # kube down leaves nothing behind
    containers.podman("kube", "down", path, timeout=120)
    assert containers.podman("pod", "exists", name, check=False).returncode != 0
    left = containers.podman("ps", "-a", "--format", "{{.Names}}", "--filter", f"pod={name}")
    assert left.stdout.strip() == ""
    assert containers.podman("container", "exists", container, check=False).returncode != 0
