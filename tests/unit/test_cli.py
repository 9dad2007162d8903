from __future__ import annotations

import asyncio

import pytest
from aiohttp.test_utils import TestServer

from browser_stack.cli import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, EXIT_USAGE, main
from browser_stack.http_api import create_app
from browser_stack.stack import Program

from .fakes import FAST, FakeSupervisor, make_controller

pytestmark = pytest.mark.unit


def test_bad_configuration_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROWSER_REMOTE_DEBUGGING_PORT", "not-a-port")
    assert main(["serve"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "BROWSER_REMOTE_DEBUGGING_PORT" in err


def test_unreachable_sidecar_is_exit_3(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--url", "http://127.0.0.1:9"]) == EXIT_UNREACHABLE
    assert "no answer from browser-stack" in capsys.readouterr().err


async def test_ensure_status_stop_against_a_sidecar(capsys: pytest.CaptureFixture[str]) -> None:
    sup = FakeSupervisor()
    controller, _ = make_controller(sup)
    async with TestServer(create_app(FAST, controller)) as server:
        url = str(server.make_url("")).rstrip("/")
        code = await asyncio.to_thread(main, ["ensure", "--url", url, "--needs", "cdp"])
        assert code == EXIT_OK
        out = capsys.readouterr().out
        assert out.startswith("ready (cold start")
        assert "cdp_ws" in out
        assert await asyncio.to_thread(main, ["status", "--url", url]) == EXIT_OK
        table = capsys.readouterr().out
        assert "browser" in table
        assert "RUNNING" in table or "STARTING" in table
        assert await asyncio.to_thread(main, ["stop", "--url", url]) == EXIT_OK
        assert "stopped:" in capsys.readouterr().out
        sup.programs[Program.BROWSER].crash_on_start = True
        code = await asyncio.to_thread(main, ["ensure", "--url", url, "--needs", "cdp"])
        assert code == EXIT_FAILED
        assert "program_failed" in capsys.readouterr().err


def test_json_logs_carry_structured_fields(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    from browser_stack.cli import configure_logging
    from browser_stack.config import Settings

    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging(Settings.from_env({"BROWSER_STACK_LOG_FORMAT": "json"}))
        logging.getLogger("browser_stack.controller").info(
            "ready program=browser",
            extra={"program": "browser", "state": "STARTING", "elapsed_ms": 246.0},
        )
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "ready program=browser"
    assert line["program"] == "browser"
    assert line["state"] == "STARTING"
    assert line["elapsed_ms"] == 246.0
    assert line["levelname"] == "INFO"
