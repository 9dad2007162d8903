"""bin/browser-stack-entrypoint, run for real with `env -0` as the command it execs."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from browser_stack import switches
from browser_stack.config import INTERNAL_OFFSET
from browser_stack.errors import ConfigError
from browser_stack.stack import DEFAULT_DISPLAY, PORTS

from .entrypoint import ENTRYPOINT, exported, run

REPO = Path(__file__).resolve().parents[2]
SHELL_SCRIPTS = [
    ENTRYPOINT,
    REPO / ".ci" / "run",
    *sorted((REPO / "scripts").glob("*.sh")),
    *sorted((REPO / "tests" / "container").glob("*/*.sh")),
    *sorted((REPO / "bench").glob("*.sh")),
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


def subprocess_env_run(tmp_path: Path, name: str, value: str) -> subprocess.CompletedProcess[str]:
    env: dict[str, str | None] = {name: value}
    return run(tmp_path, None, **env)


SWITCH_NAMES = tuple(switches.SWITCHES)
# One value of each meaning, for every combination of the switch's three names.
REPRESENTATIVE = (UNSET, "", "Yes", "0", "on")


def combination_id(values: tuple[str | None, ...]) -> str:
    return ",".join("unset" if v is None else repr(v) for v in values)


def verdict(env: dict[str, str]) -> tuple[bool | None, str]:
    """The Python definition's verdict: lazy or not, or None and its message."""
    try:
        return switches.is_lazy(env), ""
    except ConfigError as exc:
        return None, exc.message


@pytest.mark.parametrize("value", SWITCH_VALUES, ids=lambda v: "unset" if v is None else repr(v))
@pytest.mark.parametrize("name", SWITCH_NAMES)
def test_the_words_are_the_python_definitions(name: str, value: str | None) -> None:
    meaning = SWITCH_VALUES[value]
    env = {} if value is None else {name: value}
    if meaning == "invalid":
        with pytest.raises(ConfigError):
            switches.switch(name, env)
        return
    assert switches.switch(name, env) == {"unset": None, "true": True, "false": False}[meaning]


@pytest.mark.parametrize("value", SWITCH_VALUES, ids=lambda v: "unset" if v is None else repr(v))
@pytest.mark.parametrize("name", SWITCH_NAMES)
def test_each_name_and_word_as_python_reads_it(
    tmp_path: Path, name: str, value: str | None
) -> None:
    lazy, message = verdict({} if value is None else {name: value})
    for mode in ([], ["--aio"]):
        result = run(tmp_path, [*mode, "env", "-0"], **{name: value})
        if lazy is None:
            assert result.returncode == 2
            assert result.stderr == f"browser-stack-entrypoint: {message}\n"
            continue
        env = exported(result)
        if mode:
            assert env.get("DISABLE_BROWSER") == ("true" if lazy else None)
        else:
            assert env["AUTOSTART_BROWSER_STACK"] == ("false" if lazy else "true")


@pytest.mark.parametrize(
    "values", list(itertools.product(REPRESENTATIVE, repeat=3)), ids=combination_id
)
def test_switches(tmp_path: Path, values: tuple[str | None, ...]) -> None:
    given = dict(zip(SWITCH_NAMES, values, strict=True))
    lazy, message = verdict({k: v for k, v in given.items() if v is not None})
    result = run(tmp_path, **given)
    if lazy is None:
        assert result.returncode == 2
        assert result.stdout == ""  # the command was not run
        assert result.stderr == f"browser-stack-entrypoint: {message}\n"
        return
    assert result.stderr == ""
    env = exported(result)
    assert env["AUTOSTART_BROWSER_STACK"] == ("false" if lazy else "true")
    for name, value in given.items():
        if value is not None and name != switches.AUTOSTART:  # that one it sets
            assert env[name] == value  # passed through untouched


@pytest.mark.parametrize(
    ("given", "autostart", "disable"),
    [
        ({"BROWSER_STACK_DEFAULT": "lazy"}, "false", "true"),
        ({"BROWSER_STACK_DEFAULT": "Lazy", "DISABLE_BROWSER_STACK": ""}, "false", "true"),
        ({"BROWSER_STACK_DEFAULT": "lazy", "DISABLE_BROWSER_STACK": "false"}, "true", "false"),
        ({"BROWSER_STACK_DEFAULT": "lazy", "AUTOSTART_BROWSER_STACK": "1"}, "true", None),
        ({"BROWSER_STACK_DEFAULT": "lazy", "LAZY_START_BROWSER_STACK": "no"}, "true", None),
        ({"BROWSER_STACK_DEFAULT": "eager", "LAZY_START_BROWSER_STACK": "1"}, "false", None),
        ({"BROWSER_STACK_DEFAULT": "eager"}, "true", None),
        ({"BROWSER_STACK_DEFAULT": ""}, "true", None),
    ],
)
def test_an_images_default_applies_only_with_neither_switch_set(
    tmp_path: Path, given: dict[str, str], autostart: str, disable: str | None
) -> None:
    for mode in ([], ["--aio"]):
        env = exported(run(tmp_path, [*mode, "env", "-0"], **given))
        assert env.get("DISABLE_BROWSER_STACK") == disable
        if mode:
            assert env.get("DISABLE_BROWSER") == ("true" if autostart == "false" else None)
        else:
            assert env["AUTOSTART_BROWSER_STACK"] == autostart


def test_an_unknown_default_exits_2(tmp_path: Path) -> None:
    for mode in ([], ["--aio"]):
        result = run(tmp_path, [*mode, "env"], BROWSER_STACK_DEFAULT="sometimes")
        assert result.returncode == 2
        assert result.stdout == ""
        assert result.stderr == (
            "browser-stack-entrypoint: invalid BROWSER_STACK_DEFAULT='sometimes' "
            "(expected lazy or eager)\n"
        )


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


# --- AIO mode: `browser-stack-entrypoint --aio /opt/gem/run.sh` in front of the image ---

FAKE_RUN_SH = """#!/bin/sh
# Stands in for the AIO image's /opt/gem/run.sh: records what it was given.
here=$(dirname "$0")
env -0 > "$here/run.env"
printf '%s\\0' "$@" > "$here/run.args"
echo "$$" > "$here/run.pid"
exit "${FAKE_RUN_EXIT:-0}"
"""
IMAGE_SWITCHES = ("DISABLE_BROWSER", "DISABLE_MCP_BROWSER", "DISABLE_VNC")
# Variables a shell may add to the environment it passes on.
SHELL_NOISE = ("PWD", "OLDPWD", "SHLVL", "_")


def image_root(tmp_path: Path) -> Path:
    """tmp_path laid out like the image: opt/gem/run.sh, opt/gem/supervisord/, var/log."""
    gem = tmp_path / "opt" / "gem"
    (gem / "supervisord").mkdir(parents=True)
    shutil.copy(REPO / "supervisord.d" / "browser-stack.conf", gem / "supervisord")
    run_sh = gem / "run.sh"
    run_sh.write_text(FAKE_RUN_SH)
    run_sh.chmod(0o755)
    return tmp_path


def run_aio(
    root: Path, *args: str, **env: str | None
) -> tuple[subprocess.CompletedProcess[str], int]:
    """Run `entrypoint --aio <root>/opt/gem/run.sh ARGS` with exactly PATH, the log dir
    and env (None = unset); returns the result and the entrypoint's pid."""
    base = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "BROWSER_STACK_LOG_DIR": str(root / "var" / "log" / "browser-stack"),
    }
    base.update({k: v for k, v in env.items() if v is not None})
    for k, v in env.items():
        if v is None:
            base.pop(k, None)
    proc = subprocess.Popen(
        [str(ENTRYPOINT), "--aio", str(root / "opt" / "gem" / "run.sh"), *args],
        env=base,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=30)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), proc.pid


def recorded_env(root: Path) -> dict[str, str]:
    raw = (root / "opt" / "gem" / "run.env").read_text()
    pairs = (item.split("=", 1) for item in raw.split("\0") if item)
    return {k: v for k, v in pairs if k not in SHELL_NOISE}


def ran(root: Path) -> bool:
    return (root / "opt" / "gem" / "run.env").exists()


@pytest.mark.parametrize(
    "values", list(itertools.product(REPRESENTATIVE, repeat=3)), ids=combination_id
)
def test_aio_switches(tmp_path: Path, values: tuple[str | None, ...]) -> None:
    root = image_root(tmp_path)
    given: dict[str, str | None] = {
        **dict(zip(SWITCH_NAMES, values, strict=True)),
        # what a deployment may already pass to the image
        "DISABLE_BROWSER": "false",
        "DISABLE_JUPYTER": "true",
        "WAIT_PORTS": "8079,9222,8091",
        "DISPLAY": ":99",
    }
    result, _pid = run_aio(root, **given)
    lazy, message = verdict({k: v for k, v in given.items() if v is not None})
    if lazy is None:
        assert result.returncode == 2
        assert not ran(root)
        assert result.stderr == f"browser-stack-entrypoint: {message}\n"
        return
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    env = recorded_env(root)
    want = {k: v for k, v in given.items() if v is not None}
    want["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")
    want["BROWSER_STACK_LOG_DIR"] = str(root / "var" / "log" / "browser-stack")
    want[switches.DEPLOYMENT_DISABLED] = ""  # the deployment turned none of the three on
    if lazy:  # the switch is on: the image must not autostart the five
        want.update(
            DISABLE_BROWSER="true",
            DISABLE_MCP_BROWSER="true",
            DISABLE_VNC="true",
            WAIT_PORTS="8079,8091",
        )
    # Otherwise exactly the environment it was given, and the list.
    assert env == want
    assert (root / "var" / "log" / "browser-stack").is_dir()


OWN_VALUES = ("1", "YES", "", "maybe")


@pytest.mark.parametrize("lazy", [True, False], ids=["lazy", "eager"])
@pytest.mark.parametrize(
    "values", list(itertools.product(OWN_VALUES, repeat=3)), ids=combination_id
)
def test_aio_passes_on_the_deployments_own_off_switches(
    tmp_path: Path, lazy: bool, values: tuple[str, ...]
) -> None:
    """A deployment's DISABLE_BROWSER/DISABLE_MCP_BROWSER/DISABLE_VNC as it set them
    go on to the sidecar in BROWSER_STACK_DEPLOYMENT_DISABLED, whatever the switch
    then sets for run.sh; a value run.sh would not take as on is not passed on."""
    root = image_root(tmp_path)
    own = dict(zip(switches.IMAGE_SWITCHES, values, strict=True))
    result, _ = run_aio(root, LAZY_START_BROWSER_STACK="true" if lazy else None, **own)
    assert result.returncode == 0, result.stderr
    env = recorded_env(root)
    turned_on = [n for n, v in own.items() if v.lower() in ("true", "yes", "1")]
    assert env[switches.DEPLOYMENT_DISABLED] == ",".join(turned_on)
    assert switches.own_disabled(own) == tuple(turned_on)
    # And the sidecar reads back what was passed on.
    assert switches.deployment_disabled(env) == tuple(turned_on)
    for name, value in own.items():
        assert env.get(name, "") == ("true" if lazy else value)


@pytest.mark.parametrize(
    ("wait_ports", "extra", "want"),
    [
        (None, {}, "8079,8091"),  # empty: run.sh would wait for 9222
        ("", {}, "8079,8091"),
        ("8079,8091", {}, "8079,8091"),
        ("9222", {}, "8079,8091"),
        ("9222,8100,5900,6080,8888", {}, "8888"),
        ("127.0.0.1:9222, 8091 ,8888", {}, "8091,8888"),
        ("*,9222", {}, "*"),  # no globbing
        ("9222,9333", {"BROWSER_REMOTE_DEBUGGING_PORT": "9333"}, "9222"),
        ("8100,18100", {"MCP_SERVER_BROWSER_PORT": "18100"}, "8100"),
        ("9222", {"BROWSER_STACK_AIO_WAIT_PORTS": "8091"}, "8091"),
    ],
)
def test_aio_wait_ports(
    tmp_path: Path, wait_ports: str | None, extra: dict[str, str], want: str
) -> None:
    root = image_root(tmp_path)
    result, _ = run_aio(root, DISABLE_BROWSER_STACK="true", WAIT_PORTS=wait_ports, **extra)
    assert result.returncode == 0, result.stderr
    assert recorded_env(root)["WAIT_PORTS"] == want


def test_aio_unset_leaves_wait_ports_alone(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    result, _ = run_aio(root, WAIT_PORTS="9222")
    assert result.returncode == 0, result.stderr
    env = recorded_env(root)
    assert env["WAIT_PORTS"] == "9222"
    assert not set(IMAGE_SWITCHES) & set(env)


def test_aio_execs_run_sh_with_args_and_exit_code(tmp_path: Path) -> None:
    root = image_root(tmp_path)
    result, pid = run_aio(root, "a b", "", FAKE_RUN_EXIT="7", DISABLE_BROWSER_STACK="true")
    assert result.returncode == 7
    args = (root / "opt" / "gem" / "run.args").read_text().split("\0")[:-1]
    assert args == ["a b", ""]
    # exec, not a child: run.sh runs as the entrypoint's own process (PID 1 in a container)
    assert int((root / "opt" / "gem" / "run.pid").read_text()) == pid


@pytest.mark.parametrize(
    "name", ["BROWSER_REMOTE_DEBUGGING_PORT", "MCP_SERVER_BROWSER_PORT", "VNC_SERVER_PORT"]
)
def test_aio_invalid_port_is_checked_only_when_lazy(tmp_path: Path, name: str) -> None:
    root = image_root(tmp_path)
    result, _ = run_aio(root, DISABLE_BROWSER_STACK="true", **{name: "9x"})
    assert result.returncode == 2
    assert result.stderr == (
        f"browser-stack-entrypoint: invalid {name}='9x' (expected a port number 1-65535)\n"
    )
    assert not ran(root)
    result, _ = run_aio(root, **{name: "9x"})  # switch off: not ours to judge
    assert result.returncode == 0, result.stderr
    assert recorded_env(root)[name] == "9x"


def test_aio_without_command_is_a_usage_error(tmp_path: Path) -> None:
    result = run(tmp_path, ["--aio"])
    assert result.returncode == 2
    assert "usage: browser-stack-entrypoint --aio COMMAND" in result.stderr


def test_program_ports_follow_the_public_ports_without_the_proxy(tmp_path: Path) -> None:
    env = exported(run(tmp_path, BROWSER_REMOTE_DEBUGGING_PORT="9333"))
    assert env["BROWSER_STACK_PROGRAM_CDP_PORT"] == "9333"
    assert env["BROWSER_STACK_PROGRAM_MCP_PORT"] == "8100"
    assert env["BROWSER_STACK_PROGRAM_VNC_PORT"] == "5900"
    assert env["BROWSER_STACK_PROGRAM_WS_PORT"] == "6080"


def test_program_ports_move_behind_the_activation_proxy(tmp_path: Path) -> None:
    env = exported(
        run(tmp_path, BROWSER_STACK_ACTIVATION="proxy", BROWSER_STACK_INTERNAL_MCP_PORT="28100")
    )
    assert env["BROWSER_STACK_PROGRAM_CDP_PORT"] == "19222"
    assert env["BROWSER_STACK_PROGRAM_MCP_PORT"] == "28100"
    assert env["BROWSER_STACK_PROGRAM_VNC_PORT"] == "15900"
    assert env["BROWSER_STACK_PROGRAM_WS_PORT"] == "16080"
    assert env["BROWSER_REMOTE_DEBUGGING_PORT"] == "9222"  # clients still use the public one


def test_the_entrypoint_s_defaults_are_the_port_table_s(tmp_path: Path) -> None:
    # The script is shell and cannot read stack.PORTS: its defaults are checked here.
    unset: dict[str, str | None] = {p.variable: None for p in PORTS}
    eager = exported(run(tmp_path, DISPLAY=None, BROWSER_STACK_X_DISPLAY=None, **unset))
    proxy = exported(run(tmp_path, BROWSER_STACK_ACTIVATION="proxy", **unset))
    assert eager["DISPLAY"] == DEFAULT_DISPLAY
    assert eager["BROWSER_STACK_X_DISPLAY"] == DEFAULT_DISPLAY
    for port in PORTS:
        assert eager[port.variable] == str(port.default), port.name
        assert eager[port.program_variable] == str(port.default), port.name
        behind = port.default + INTERNAL_OFFSET
        assert proxy[port.program_variable] == str(behind), port.name
        assert proxy[port.variable] == str(port.default), port.name


def test_unknown_activation_mode_exits_2(tmp_path: Path) -> None:
    result = run(tmp_path, BROWSER_STACK_ACTIVATION="socket")
    assert result.returncode == 2
    assert "BROWSER_STACK_ACTIVATION" in result.stderr
