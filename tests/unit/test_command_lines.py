"""How the programs read their command lines, as tables. Each row that says what
Chromium or Xvnc does was seen with the real program; tests/e2e/test_doctor_flags_real.py
runs them on the same lines through supervisord and compares."""

from __future__ import annotations

import pytest

from browser_stack.doctor.command_lines import (
    Switch,
    chromium_port,
    chromium_switch,
    debian_order,
    option_value,
    unwrap,
    xvnc_display,
    xvnc_parameter,
)

PORT = "remote-debugging-port"


@pytest.mark.parametrize(
    ("args", "value"),
    [
        (["--remote-debugging-port=9222"], "9222"),
        (["-remote-debugging-port=9222"], "9222"),
        (["--remote-debugging-port", "9222", "about:blank"], ""),  # 9222 is a URL to it
        (["--remote-debugging-port=", "9222"], ""),
        (["--remote-debugging-port=9222", "--remote-debugging-port=9333"], "9333"),
        (["--REMOTE-DEBUGGING-PORT=9222"], None),
        (["---remote-debugging-port=9222"], None),
        (["--remote-debugging-port=9222", "--", "--remote-debugging-port=9333"], "9222"),
        (["about:blank"], None),
    ],
)
def test_chromium_switch(args: list[str], value: str | None) -> None:
    switch = chromium_switch(args, PORT)
    assert (None if switch is None else switch.value) == value


def test_the_words_of_a_switch_written_with_a_space() -> None:
    spaced = chromium_switch(["--remote-debugging-port", "9222", "about:blank"], PORT)
    assert spaced == Switch("", ("--remote-debugging-port", "9222"))


@pytest.mark.parametrize(
    ("args", "ordered"),
    [
        # The leading -- flags go last; the first other word stops the move.
        (["--a=1", "about:blank", "--b=2"], ["about:blank", "--b=2", "--a=1"]),
        (["--a=1", "-b=2", "--c=3"], ["-b=2", "--c=3", "--a=1"]),
        # A -- stops it too and is dropped; what follows it stays a flag.
        (["--a=1", "--", "--b=2"], ["--b=2", "--a=1"]),
        (["--temp-profile", "--a=1"], ["--a=1"]),
    ],
)
def test_debian_order(args: list[str], ordered: list[str]) -> None:
    assert debian_order(args) == ordered


def test_through_debians_script_the_leading_flag_wins_over_one_after_a_url() -> None:
    args = ["--remote-debugging-port=9222", "about:blank", "--remote-debugging-port=9333"]
    assert chromium_switch(args, PORT) == Switch("9333", ("--remote-debugging-port=9333",))
    assert chromium_switch(args, PORT, debian=True) == Switch(
        "9222", ("--remote-debugging-port=9222",)
    )
    after = ["--remote-debugging-port=9421", "--", "--remote-debugging-port=9422"]
    assert chromium_switch(after, PORT, debian=True) == Switch(
        "9421", ("--remote-debugging-port=9421",)
    )


@pytest.mark.parametrize(
    ("value", "port"),
    [
        ("9222", 9222),
        ("+9222", 9222),
        ("09222", 9222),
        ("9222 ", 9222),
        ("9222\t", 9222),
        ("0", 0),
        ("65535", 65535),
        (" 9222", None),
        ("", None),
        ("$CDP_PORT", None),
        ("9222x", None),
        ("-1", None),
        ("65536", None),
        ("9222.0", None),
    ],
)
def test_chromium_port(value: str, port: int | None) -> None:
    assert chromium_port(value) == port


@pytest.mark.parametrize(
    ("args", "value", "display"),
    [
        ([":1", "-rfbport", "5901"], "5901", 1),
        ([":1", "-rfbport=5901"], "5901", 1),
        ([":1", "rfbport=5901"], "5901", 1),
        ([":1", "--rfbport=5901"], "5901", 1),
        ([":1", "-RFBPORT", "5901"], "5901", 1),
        ([":1", "-rfbport", "5901", "-rfbport", "5902"], "5902", 1),
        ([":1", ":2"], None, 2),
        (["-geometry", "1280x720"], None, None),
        ([":1", "--rfbport", "5901"], "", 1),  # Xvnc exits: "Unrecognized option"
    ],
)
def test_xvnc(args: list[str], value: str | None, display: int | None) -> None:
    switch = xvnc_parameter(args, "rfbport")
    assert (None if switch is None else switch.value) == value
    assert xvnc_display(args) == display


def test_xvnc_names_both_words_of_a_refused_option() -> None:
    assert xvnc_parameter(["--rfbport", "5901"], "rfbport") == Switch("", ("--rfbport", "5901"))


def test_option_value_takes_the_last() -> None:
    args = ["--port", "1", "--port=2", "--host", "h"]
    assert option_value(args, "--port") == Switch("2", ("--port=2",))
    assert option_value(args, "--host") == Switch("h", ("--host", "h"))
    assert option_value(["--port"], "--port") is None


@pytest.mark.parametrize(
    ("argv", "words", "direct"),
    [
        (["chromium", "--a"], ["chromium", "--a"], True),
        (
            ["bash", "-c", "exec chromium --a=1 about:blank"],
            ["chromium", "--a=1", "about:blank"],
            True,
        ),
        (["sh", "-ec", "mkdir -p /p; exec chromium --a"], ["chromium", "--a"], True),
        (["sh", "-c", "chromium --a; echo done"], ["chromium", "--a"], None),
        (["sh", "-c", "DISPLAY=:1 exec chromium"], ["chromium"], True),
        (["env", "DISPLAY=:1", "chromium", "--a"], ["chromium", "--a"], True),
        (["/opt/start.sh", "--a"], ["/opt/start.sh", "--a"], True),
        (["sh", "-c", "echo 'unbalanced"], ["sh", "-c", "echo 'unbalanced"], True),
    ],
)
def test_unwrap(argv: list[str], words: list[str], direct: bool | None) -> None:
    assert unwrap(argv, ["chromium"]) == (words, direct)
