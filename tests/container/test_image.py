"""The image as a container: built by scripts/build-image.sh on the AIO stand-in and
run under podman, lazy and eager, reached through the gateway's published port with
real clients. The tests that share the lazy container bring its stack to the state
they start from, so they pass in any order."""

from __future__ import annotations

import asyncio
import json
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..clients import (
    RFB_BANNER,
    cookies,
    mcp_tool_names,
    page_text,
    rfb_banner_over_websocket,
    set_cookie,
)
from ..helpers import PROGRAMS, free_port, request, wait_for
from .conftest import (
    PAGE,
    api,
    containers,
    stack_processes,
    states,
    status,
    wait_serving,
)

CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="module")
def lazy(image: str) -> Iterator[Any]:
    with containers.running(image, free_port(), env={"DISABLE_BROWSER_STACK": "true"}) as c:
        wait_serving(c)
        yield c


def stop_stack(container: Any) -> None:
    code, out = api(container, "POST", "/stop")
    assert code == 200, out
    assert set(states(container.url).values()) == {"STOPPED"}


def test_lazy_boot_runs_none_of_the_five_and_run_sh_waits_without_them(lazy: Any) -> None:
    # entrypoint -> run.sh -> supervisord, each exec'd: supervisord is PID 1
    assert "supervisord" in lazy.exec("cat", "/proc/1/cmdline")
    assert states(lazy.url) == dict.fromkeys(PROGRAMS, "STOPPED")
    assert stack_processes(lazy) == []
    # the entrypoint took the stack's ports out of what run.sh waits for, and the
    # wait ended with none of the five running
    wait = wait_for(lambda: "ready" in (w := lazy.exec("cat", "/var/run/gem-wait")) and w)
    assert wait.splitlines() == ["waiting for 8079,8091", "ready"]


def test_healthcheck_is_healthy_through_readyz_and_wakes_nothing(lazy: Any) -> None:
    stop_stack(lazy)
    config = lazy.inspect()["Config"]["Healthcheck"]
    assert config["Test"] == [
        "CMD",
        "/opt/browser-stack/venv/bin/python",
        "-m",
        "browser_stack.client",
        "readyz",
    ]
    checked = containers.podman("healthcheck", "run", lazy.name, check=False)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert lazy.inspect()["State"]["Health"]["Status"] == "healthy"
    assert stack_processes(lazy) == []


def test_ensure_through_the_gateway(lazy: Any) -> None:
    stop_stack(lazy)
    code, out = api(lazy, "POST", "/ensure", {"needs": ["cdp"]})
    assert code == 200, out
    assert out["ready"] is True and out["cold"] is True
    assert out["programs"]["browser"]["ready"] is True
    assert "chromium" in " ".join(stack_processes(lazy))


def test_playwright_through_the_gated_cdp_route_starts_a_cold_stack(lazy: Any) -> None:
    stop_stack(lazy)
    with urllib.request.urlopen(lazy.url + "/cdp/json/version", timeout=60) as r:
        version = json.loads(r.read())
    # Chromium wrote the caller's Host (the published port) into the websocket URL
    ws_url = version["webSocketDebuggerUrl"]
    assert ws_url.startswith(f"ws://127.0.0.1:{lazy.port}/devtools/browser/"), ws_url
    assert asyncio.run(page_text(ws_url, PAGE, "#x")) == "stand-in page"
    assert status(lazy.url)["ready"]["cdp"] is True


def test_mcp_through_its_gated_route_from_cold(lazy: Any) -> None:
    stop_stack(lazy)
    names = asyncio.run(mcp_tool_names(lazy.url + "/sse"))
    assert [n for n in names if n.startswith("browser_")], names
    assert status(lazy.url)["ready"]["mcp"] is True


def test_vnc_websocket_through_its_gated_route_from_cold(lazy: Any) -> None:
    stop_stack(lazy)
    url = lazy.url.replace("http://", "ws://") + "/websockify"
    assert asyncio.run(rfb_banner_over_websocket(url)) == RFB_BANNER
    assert status(lazy.url)["ready"]["vnc"] is True


def test_the_ungated_route_and_status_never_wake_the_stack(lazy: Any) -> None:
    stop_stack(lazy)
    for _ in range(3):
        assert request(lazy.url, "GET", "/v1/shell/x").status == 200
        assert request(lazy.url, "GET", "/browser-stack/healthz").status == 200
        assert set(states(lazy.url).values()) == {"STOPPED"}
    assert stack_processes(lazy) == []


def test_idle_stop_inside_the_container(image: str, sandbox_factory: Any) -> None:
    c = sandbox_factory(
        image,
        env={
            "DISABLE_BROWSER_STACK": "true",
            "BROWSER_STACK_IDLE_TIMEOUT": "3",
            "BROWSER_STACK_IDLE_MIN_UPTIME": "1",
        },
    )
    code, out = api(c, "POST", "/ensure", {"needs": ["cdp"]})
    assert code == 200, out
    wait_for(lambda: set(states(c.url).values()) == {"STOPPED"}, timeout=90, what="the idle stop")
    idle = status(c.url)["idle"]
    assert idle["enabled"] is True and idle["idle_stops"] >= 1
    wait_for(lambda: stack_processes(c) == [], timeout=30, what="the stack's processes to end")


def test_podman_stop_is_clean_and_cookies_outlive_the_container(
    image: str, sandbox_factory: Any
) -> None:
    """`podman stop` ends the container within its 10 s grace period (exit 0; a
    SIGKILL after the grace period would be 137), and the profile on a volume keeps
    a cookie for the next container."""
    volume = containers.unique("profile")
    containers.podman("volume", "create", "--label", containers.LABEL, volume)
    try:
        env = {"DISABLE_BROWSER_STACK": "true"}
        mount = [f"{volume}:/var/lib/browser"]
        first = sandbox_factory(image, env=env, volumes=mount)
        code, out = api(first, "POST", "/ensure", {"needs": ["cdp"]})
        assert code == 200, out
        cdp = f"{first.url}/cdp/"
        asyncio.run(set_cookie(cdp, PAGE, "kept", "across-containers"))
        exit_code, seconds = containers.stop(first.name, timeout_s=10)
        print(f"podman stop: {seconds:.2f} s, exit {exit_code}")
        assert exit_code == 0, first.logs()[-3000:]
        containers.remove(first.name)

        second = sandbox_factory(image, env=env, volumes=mount)
        code, out = api(second, "POST", "/ensure", {"needs": ["cdp"]})
        assert code == 200, out
        found = asyncio.run(cookies(f"{second.url}/cdp/", PAGE))
        assert found.get("kept") == "across-containers", found
    finally:
        containers.podman("volume", "rm", "-f", volume, check=False)


def test_eager_without_the_switch_starts_the_five_at_boot(image: str, sandbox_factory: Any) -> None:
    c = sandbox_factory(image)
    # ready by the probes; RUNNING by supervisord, which says so startsecs after a spawn
    wait_for(
        lambda: all(status(c.url)["ready"].values()) and set(states(c.url).values()) == {"RUNNING"},
        timeout=120,
        what="the five ready and RUNNING at boot",
    )


def test_the_lazy_default_image_starts_lazy_with_no_environment(
    lazy_image: str, sandbox_factory: Any
) -> None:
    env = lazy_image_env(lazy_image)
    assert env["BROWSER_STACK_DEFAULT"] == "lazy"
    assert "DISABLE_BROWSER_STACK" not in env
    c = sandbox_factory(lazy_image)
    assert states(c.url) == dict.fromkeys(PROGRAMS, "STOPPED")
    assert stack_processes(c) == []
    # and it still starts on first use
    code, out = api(c, "POST", "/ensure", {"needs": ["cdp"]})
    assert code == 200 and out["ready"] is True, out


def test_the_lazy_default_is_overridden_by_the_containers_own_switch(
    lazy_image: str, sandbox_factory: Any
) -> None:
    c = sandbox_factory(lazy_image, env={"DISABLE_BROWSER_STACK": "false"})
    wait_for(
        lambda: all(status(c.url)["ready"].values()), timeout=120, what="the five ready at boot"
    )


def lazy_image_env(tag: str) -> dict[str, str]:
    [config] = containers.podman_json("image", "inspect", tag)
    return dict(item.split("=", 1) for item in config["Config"]["Env"])


def layer_dirs(tag: str) -> list[Path]:
    """The image's layers as overlay directories, bottom last (podman's GraphDriver)."""
    [config] = containers.podman_json("image", "inspect", tag)
    data = config["GraphDriver"]["Data"]
    dirs = [data["UpperDir"], *data.get("LowerDir", "").split(":")]
    return [Path(d) for d in dirs if d]


def test_no_layer_carries_the_build_machines_ca_bundle(image: str, standin: str) -> None:
    """The build got the machine's CA bundle as a secret for its install step; none
    of the layers the build added holds that file (checked by content: any file of
    its size in them is compared), nor a leftover of the secret's mount point."""
    if not CA_BUNDLE.is_file():
        pytest.skip(f"{CA_BUNDLE} is not on this machine: the build had no CA bundle")
    bundle = CA_BUNDLE.read_bytes()
    base = set(layer_dirs(standin))
    added = [d for d in layer_dirs(image) if d not in base]
    assert added, "the build added no layer?"
    scanned = 0
    for layer in added:
        for path in layer.rglob("*"):
            if path.is_symlink() or not path.is_file():
                continue
            scanned += 1
            assert "build-ca" not in path.name, path
            if path.stat().st_size == len(bundle):
                assert path.read_bytes() != bundle, f"{path} is the build machine's CA bundle"
    assert scanned > 100, scanned  # the venv's files were looked at


def test_build_image_usage_errors_name_the_options() -> None:
    done = subprocess.run(
        [str(containers.BUILD_IMAGE), "--bogus"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 2
    assert "--base IMAGE" in done.stderr and "--lazy" in done.stderr
