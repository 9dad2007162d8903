"""browser_stack.doctor.boot against bin/browser-stack-entrypoint: on the same
environments, what the doctor assumes supervisord boots with is what the
script exports, in both modes, and both refuse the same bad values."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from browser_stack import switches
from browser_stack.doctor import boot
from browser_stack.errors import ConfigError

from .entrypoint import exported, run

SWITCHES = [
    {},
    {"DISABLE_BROWSER_STACK": "true"},
    {"DISABLE_BROWSER_STACK": "No"},
    {"AUTOSTART_BROWSER_STACK": "0"},
    {"AUTOSTART_BROWSER_STACK": "yes", "DISABLE_BROWSER_STACK": "1"},
    {"DISABLE_BROWSER_STACK": "maybe"},
    {"BROWSER_STACK_DEFAULT": "lazy"},
    {"BROWSER_STACK_DEFAULT": "Eager"},
    {"BROWSER_STACK_DEFAULT": "lazy", "DISABLE_BROWSER_STACK": "false"},
    {"BROWSER_STACK_DEFAULT": "lazy", "AUTOSTART_BROWSER_STACK": "true"},
    {"BROWSER_STACK_DEFAULT": "sometimes", "DISABLE_BROWSER_STACK": "true"},
    {"LAZY_START_BROWSER_STACK": "TRUE"},
    {"LAZY_START_BROWSER_STACK": "0", "BROWSER_STACK_DEFAULT": "lazy"},
    {"LAZY_START_BROWSER_STACK": "soon"},
    {"LAZY_START_BROWSER_STACK": "yes", "DISABLE_MCP_BROWSER": "true", "DISABLE_VNC": "no"},
    {"DISABLE_BROWSER": "Yes", "DISABLE_VNC": "1"},
]
WAITS = [
    {},
    {"WAIT_PORTS": "8079,9222,8091"},
    {"WAIT_PORTS": "9222"},
    {"WAIT_PORTS": "localhost:8100 6080,8079"},
    {"WAIT_PORTS": "9222", "BROWSER_STACK_AIO_WAIT_PORTS": "8088"},
]
OTHERS = [
    {},
    {
        "DISPLAY": "localhost:5.0",
        "BROWSER_REMOTE_DEBUGGING_PORT": "9333",
        "VNC_SERVER_PORT": "5901",
    },
    {"BROWSER_STACK_ACTIVATION": "proxy", "BROWSER_STACK_INTERNAL_MCP_PORT": "28100"},
    {"BROWSER_STACK_X_DISPLAY": ":4", "MCP_SERVER_BROWSER_PORT": ""},
    {"WEBSOCKET_PROXY_PORT": "60800"},
    {"DISPLAY": "99"},
]
STANDALONE_KEYS = (
    "AUTOSTART_BROWSER_STACK",
    "DISABLE_BROWSER_STACK",
    "DISPLAY",
    "BROWSER_STACK_X_DISPLAY",
    "VNC_SERVER_PORT",
    "BROWSER_REMOTE_DEBUGGING_PORT",
    "MCP_SERVER_BROWSER_PORT",
    "WEBSOCKET_PROXY_PORT",
    "BROWSER_STACK_PROGRAM_VNC_PORT",
    "BROWSER_STACK_PROGRAM_CDP_PORT",
    "BROWSER_STACK_PROGRAM_MCP_PORT",
    "BROWSER_STACK_PROGRAM_WS_PORT",
    "BROWSER_STACK_PROFILE_DIR",
    "BROWSER_STACK_LOG_DIR",
)
AIO_KEYS = (
    "BROWSER_STACK_DEPLOYMENT_DISABLED",
    "DISABLE_BROWSER_STACK",
    "DISABLE_BROWSER",
    "DISABLE_MCP_BROWSER",
    "DISABLE_VNC",
    "WAIT_PORTS",
)


def entrypoint(tmp_path: Path, env: dict[str, str], *mode: str) -> dict[str, str] | None:
    """What the script exports (None when it refuses the environment)."""
    done = run(tmp_path, [*mode, "env", "-0"], **env)
    if done.returncode == 2:
        return None
    return exported(done)


def mirror(tmp_path: Path, env: dict[str, str]) -> dict[str, str] | None:
    full = {
        "BROWSER_STACK_PROFILE_DIR": str(tmp_path / "profile"),
        "BROWSER_STACK_LOG_DIR": str(tmp_path / "log"),
        **env,
    }
    try:
        return boot.boot_environment(full)
    except ConfigError:
        return None


CASES = [
    {**s, **w, **o}
    for s, w, o in itertools.product(SWITCHES, WAITS, OTHERS)
    # every switch with every WAIT_PORTS; the other variables with a few of those
    if not o or (s in SWITCHES[:2] and w in WAITS[:2])
]


@pytest.mark.parametrize("env", CASES, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()))
def test_boot_environment_is_what_the_entrypoint_exports(
    tmp_path: Path, env: dict[str, str]
) -> None:
    ours = mirror(tmp_path, env)
    standalone = entrypoint(tmp_path, env)
    aio = entrypoint(tmp_path, env, "--aio")
    if ours is None:
        # The standalone mode refuses all the bad values; --aio checks only the
        # switch, and the ports when the switch is on.
        assert standalone is None
        return
    assert standalone is not None
    assert {k: ours.get(k) for k in STANDALONE_KEYS} == {
        k: standalone.get(k) for k in STANDALONE_KEYS
    }
    assert aio is not None
    assert {k: ours.get(k) for k in AIO_KEYS} == {k: aio.get(k) for k in AIO_KEYS}
    assert switches.is_lazy(env) == (standalone["AUTOSTART_BROWSER_STACK"] == "false")


@pytest.mark.parametrize(
    ("switch", "expected"),
    [("", "true"), ("DISABLE_BROWSER_STACK=true", "false"), ("DISABLE_BROWSER=true", "false")],
)
def test_run_sh_autostart_from_the_image_switches(switch: str, expected: str) -> None:
    env = dict([switch.split("=")]) if switch else {}
    out = boot.boot_environment(env)
    assert out["AUTOSTART_BROWSER"] == expected
    if switch.startswith("DISABLE_BROWSER_STACK"):
        assert out["AUTOSTART_VNC"] == out["AUTOSTART_MCP_BROWSER"] == "false"


def test_run_sh_autostart_already_set_is_kept() -> None:
    assert boot.boot_environment({"AUTOSTART_VNC": "false"})["AUTOSTART_VNC"] == "false"


def test_describe_switch() -> None:
    assert switches.describe({"DISABLE_BROWSER_STACK": "true"}) == "DISABLE_BROWSER_STACK=true"
    assert switches.describe({"LAZY_START_BROWSER_STACK": "1"}) == "LAZY_START_BROWSER_STACK=1"
    assert switches.describe({"BROWSER_STACK_DEFAULT": "lazy"}) == "BROWSER_STACK_DEFAULT=lazy"
    assert switches.describe({}) == "no switch set"


def test_run_sh_autostart_of_the_images_other_services() -> None:
    """The image's other switches reach their program files the same way, so the
    doctor can read a Jupyter or code-server program file at build time."""
    out = boot.boot_environment({"DISABLE_JUPYTER": "true"})
    assert out["AUTOSTART_JUPYTER"] == "false"
    assert out["AUTOSTART_CODE_SERVER"] == "true"
