"""bin/browser-stack-entrypoint, run for real with `env -0` as the command it execs."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parent.parent
ENTRYPOINT = REPO / "bin" / "browser-stack-entrypoint"
SHELL_SCRIPTS = [
    ENTRYPOINT,
    REPO / ".ci" / "run",
    *sorted((REPO / "scripts").glob("*.sh")),
]

UNSET = None
# value -> what it means; None = unset, "" counts as unset
SWITCH_VALUES: dict[str | None, str] = {
    UNSET: "unset",
    "": "unset",
    "true": "true",
    "TRUE": "true",
    "1": "true",
    "Yes": "true",
    "false": "false",
    "False": "false",
    "0": "false",
    "no": "false",
    "garbage": "invalid",
    "on": "invalid",
}


def run(
    tmp_path: Path, args: list[str] | None = None, **env: str | None
) -> subprocess.CompletedProcess[str]:
    """Run the entrypoint with a clean environment: PATH, scratch dirs, then env
    (None removes a variable)."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BROWSER_STACK_PROFILE_DIR": str(tmp_path / "profile"),
        "BROWSER_STACK_LOG_DIR": str(tmp_path / "log"),
    }
    base.update({k: v for k, v in env.items() if v is not None})
    for k, v in env.items():
        if v is None:
            base.pop(k, None)
    return subprocess.run(
        [str(ENTRYPOINT), *(["env", "-0"] if args is None else args)],
        env=base,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def subprocess_env_run(tmp_path: Path, name: str, value: str) -> subprocess.CompletedProcess[str]:
    env: dict[str, str | None] = {name: value}
    return run(tmp_path, None, **env)


def exported(result: subprocess.CompletedProcess[str]) -> dict[str, str]:
    assert result.returncode == 0, result.stderr
    pairs = (item.split("=", 1) for item in result.stdout.split("\0") if item)
    return {k: v for k, v in pairs}


def expected_autostart(disable: str, autostart: str) -> str | None:
    if "invalid" in (disable, autostart):
        return None
    return "false" if disable == "true" or autostart == "false" else "true"


@pytest.mark.parametrize(
    ("disable", "autostart"),
    list(itertools.product(SWITCH_VALUES, SWITCH_VALUES)),
    ids=lambda v: "unset" if v is None else repr(v),
)
def test_switches(tmp_path: Path, disable: str | None, autostart: str | None) -> None:
    result = run(tmp_path, DISABLE_BROWSER_STACK=disable, AUTOSTART_BROWSER_STACK=autostart)
    want = expected_autostart(SWITCH_VALUES[disable], SWITCH_VALUES[autostart])
    if want is None:
        assert result.returncode == 2
        assert result.stdout == ""  # the command was not run
        lines = result.stderr.splitlines()
        assert len(lines) == 1, lines
        bad = "DISABLE_BROWSER_STACK" if SWITCH_VALUES[disable] == "invalid" else "AUTOSTART_"
        assert lines[0].startswith("browser-stack-entrypoint: invalid ")
        assert bad in lines[0]
        return
    assert result.stderr == ""
    env = exported(result)
    assert env["AUTOSTART_BROWSER_STACK"] == want
    if disable is not None:
        assert env["DISABLE_BROWSER_STACK"] == disable  # passed through untouched


def test_defaults(tmp_path: Path) -> None:
    env = exported(run(tmp_path))
    assert env["AUTOSTART_BROWSER_STACK"] == "true"
    assert env["DISPLAY"] == ":99"
    assert env["BROWSER_STACK_X_DISPLAY"] == ":99"
    assert env["VNC_SERVER_PORT"] == "5900"
    assert env["BROWSER_REMOTE_DEBUGGING_PORT"] == "9222"
    assert env["MCP_SERVER_BROWSER_PORT"] == "8100"
    assert env["WEBSOCKET_PROXY_PORT"] == "6080"
    assert (tmp_path / "profile").is_dir()
    assert (tmp_path / "log").is_dir()


def test_values_already_set_are_kept(tmp_path: Path) -> None:
    env = exported(
        run(
            tmp_path,
            DISPLAY=":7",
            VNC_SERVER_PORT="15900",
            BROWSER_REMOTE_DEBUGGING_PORT="19222",
            MCP_SERVER_BROWSER_PORT="18100",
            WEBSOCKET_PROXY_PORT="16080",
            BROWSER_STACK_PROFILE_DIR=str(tmp_path / "a" / "b"),
            BROWSER_STACK_LOG_DIR=str(tmp_path / "c" / "d"),
        )
    )
    assert env["DISPLAY"] == ":7"
    assert env["BROWSER_STACK_X_DISPLAY"] == ":7"
    assert env["VNC_SERVER_PORT"] == "15900"
    assert env["BROWSER_REMOTE_DEBUGGING_PORT"] == "19222"
    assert env["MCP_SERVER_BROWSER_PORT"] == "18100"
    assert env["WEBSOCKET_PROXY_PORT"] == "16080"
    assert (tmp_path / "a" / "b").is_dir()
    assert (tmp_path / "c" / "d").is_dir()


@pytest.mark.parametrize(
    ("display", "x_display"),
    [(":99", ":99"), (":99.0", ":99"), (":5.12", ":5"), ("localhost:10.0", ":10"), ("", ":99")],
)
def test_x_display_drops_host_and_screen(tmp_path: Path, display: str, x_display: str) -> None:
    env = exported(run(tmp_path, DISPLAY=display))
    assert env["DISPLAY"] == (display or ":99")
    assert env["BROWSER_STACK_X_DISPLAY"] == x_display


def test_x_display_can_be_set(tmp_path: Path) -> None:
    env = exported(run(tmp_path, DISPLAY=":99.0", BROWSER_STACK_X_DISPLAY=":42"))
    assert env["BROWSER_STACK_X_DISPLAY"] == ":42"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISPLAY", "99"),
        ("DISPLAY", ":x"),
        ("VNC_SERVER_PORT", "0"),
        ("BROWSER_REMOTE_DEBUGGING_PORT", "65536"),
        ("MCP_SERVER_BROWSER_PORT", "81OO"),
        ("WEBSOCKET_PROXY_PORT", "-1"),
        ("VNC_SERVER_PORT", "99999999999999999999"),
    ],
)
def test_invalid_values_exit_2(tmp_path: Path, name: str, value: str) -> None:
    result = subprocess_env_run(tmp_path, name, value)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == f"browser-stack-entrypoint: invalid {name}='{value}'" + (
        " (expected :N or :N.S)\n" if name == "DISPLAY" else " (expected a port number 1-65535)\n"
    )


def test_execs_the_command_with_its_arguments_and_exit_code(tmp_path: Path) -> None:
    result = run(tmp_path, ["sh", "-c", 'echo "$0|$1|$AUTOSTART_BROWSER_STACK"; exit 7', "a b", ""])
    assert result.returncode == 7
    assert result.stdout == "a b||true\n"


def test_no_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, [])
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_unwritable_dir_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    result = run(tmp_path, BROWSER_STACK_LOG_DIR=str(blocker / "log"))
    assert result.returncode != 0
    assert result.stdout == ""


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
@pytest.mark.parametrize("script", SHELL_SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck(script: Path) -> None:
    assert script.exists(), script
    result = subprocess.run(
        ["shellcheck", "--external-sources", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stdout + result.stderr
