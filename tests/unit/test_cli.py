from __future__ import annotations

import asyncio
import gc
import json
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from browser_stack import memory
from browser_stack.cli import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_STARTUP,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    main,
    serve,
)
from browser_stack.server import claim_unix_path, create_app
from browser_stack.stack import Program

from ..helpers import free_ports
from .fakes import FAST, FakeSupervisor, make_controller


def test_bad_configuration_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BROWSER_REMOTE_DEBUGGING_PORT", "not-a-port")
    assert main(["serve"]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "BROWSER_REMOTE_DEBUGGING_PORT" in err


def test_doctor_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # cli defines the doctor's arguments and loads the doctor only for this command.
    assert main(["doctor", "--static"]) == EXIT_USAGE
    assert "--static and --config go together" in capsys.readouterr().err
    conf = tmp_path / "supervisord.conf"
    conf.write_text(f"[supervisord]\nlogfile={tmp_path / 'supervisord.log'}\n")
    assert main(["doctor", "--json", "--static", "--config", str(conf)]) == EXIT_FAILED
    report = json.loads(capsys.readouterr().out)
    assert report["mode"] == "static"
    failed = {c["check"] for c in report["checks"] if c["verdict"] == "fail"}
    assert "programs" in failed, failed
    # What supervisord -c cannot read is a bad argument, not a finding.
    for config in ("", str(tmp_path / "missing.conf"), str(tmp_path)):
        assert main(["doctor", "--static", "--config", config]) == EXIT_USAGE
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err, err


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

    from browser_stack.config import Settings
    from browser_stack.server import configure_logging

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


# -- bad arguments: exit 2, one line, no traceback ------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["ensure", "--timeout", "0"],
        ["ensure", "--timeout", "nan"],
        ["ensure", "--timeout", "301"],
        ["ensure", "--timeout", "soon"],
        ["ensure", "--needs", "gpu"],
        ["ensure", "--needs", "cdp,gpu", "--url", "http://127.0.0.1:9"],
        ["status", "--url", "foo"],
        ["status", "--url", "http://[::1"],
        ["stop", "--url", "ftp://host:1"],
        ["frobnicate"],
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    assert captured.err.startswith("browser-stack")
    assert "Traceback" not in captured.err


async def test_the_listen_form_and_a_unix_socket_are_urls_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    controller, _ = make_controller(FakeSupervisor())
    app = create_app(FAST, controller)
    async with TestServer(app) as server:
        bare = f"127.0.0.1:{server.port}"
        assert await asyncio.to_thread(main, ["status", "--url", bare]) == EXIT_OK
        assert "browser" in capsys.readouterr().out
    runner = web.AppRunner(create_app(FAST, controller))
    await runner.setup()
    path = tmp_path / "bs.sock"
    try:
        await web.UnixSite(runner, str(path)).start()
        code = await asyncio.to_thread(main, ["ensure", "--url", f"unix:{path}", "--needs", "cdp"])
        assert code == EXIT_OK
        assert capsys.readouterr().out.startswith("ready (cold start")
    finally:
        await runner.cleanup()


async def test_a_failed_start_prints_the_last_lines_of_its_stderr(
    capsys: pytest.CaptureFixture[str],
) -> None:
    sup = FakeSupervisor()
    sup.programs[Program.BROWSER].crash_on_start = True
    sup.programs[Program.BROWSER].stderr = "\n".join(
        ["[1:1] starting", *(f"noise {i}" for i in range(10)), "Missing X server or $DISPLAY", ""]
    )
    controller, _ = make_controller(sup)
    async with TestServer(create_app(FAST, controller)) as server:
        url = str(server.make_url("")).rstrip("/")
        code = await asyncio.to_thread(main, ["ensure", "--url", url, "--needs", "cdp"])
    assert code == EXIT_FAILED
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("browser-stack: 502 program_failed: browser")
    assert err[1:] == [f"    noise {i}" for i in range(6, 10)] + [
        "    Missing X server or $DISPLAY"
    ]


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ('{"a": 1}', "not a memory sample (GET /v1/browser-stack/memory writes one): no timestamp"),
        ("[1, 2]", "not a memory sample: a JSON list, not an object"),
        ("{not json", "Expecting property name"),
    ],
)
def test_memory_diff_of_something_that_is_not_a_sample_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, fragment: str
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(memory.report({}, {}, "good")))
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    assert main(["memory", "diff", str(good), str(bad)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert f"cannot read sample {bad}: " in err
    assert fragment in err
    assert main(["memory", "diff", str(good), str(good)]) == EXIT_OK


# -- serve: what it refuses to do, and how it says a start failed ----------------------


@pytest.fixture(autouse=True)
def root_logger_restored() -> Iterator[None]:
    # serve() points the root logger at this test's (captured) stderr; a later
    # test would log into a closed stream.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def serve_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return {"SUPERVISOR_SERVER_URL": f"unix://{tmp_path}/no-supervisord.sock", **extra}


@pytest.fixture
def live_socket(tmp_path: Path) -> Iterator[Path]:
    """A unix socket something listens on (as supervisord's does)."""
    path = tmp_path / "supervisor.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener:
        listener.bind(str(path))
        listener.listen()
        yield path


def test_serve_never_deletes_a_live_socket(
    tmp_path: Path, live_socket: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It unlinked whatever was at the path: supervisorctl was locked out.
    env = serve_env(tmp_path, BROWSER_STACK_LISTEN=f"unix:{live_socket}")
    assert serve(env) == EXIT_STARTUP
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert str(live_socket) in err and "a server is listening" in err
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.connect(str(live_socket))  # still there, still answering


def test_serve_never_replaces_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("keep me")
    assert serve(serve_env(tmp_path, BROWSER_STACK_LISTEN=f"unix:{path}")) == EXIT_STARTUP
    assert "not a socket" in capsys.readouterr().err
    assert path.read_text() == "keep me"


def test_a_socket_nobody_listens_on_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "left-over.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as old:
        old.bind(str(path))  # bound, never listening: connect is refused
    claim_unix_path(str(path))
    assert not path.exists()
    claim_unix_path(str(path))  # nothing there: nothing to do


def test_serve_on_a_taken_port_names_it_and_exits_4(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert serve(serve_env(tmp_path, BROWSER_STACK_LISTEN=f"127.0.0.1:{port}")) == EXIT_STARTUP
    # The last line of stderr, after the log's warning that supervisord is away.
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(
        f"browser-stack: cannot start: cannot listen on BROWSER_STACK_LISTEN=127.0.0.1:{port}"
    )


def test_a_proxy_port_taken_is_named_and_nothing_is_left_open(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # It said "cannot listen on BROWSER_STACK_LISTEN" (the sidecar's address) and
    # left its client session unclosed.
    listen, cdp, mcp, vnc, ws, *internal = free_ports(9)
    with socket.create_server(("127.0.0.1", mcp)):
        env = serve_env(
            tmp_path,
            BROWSER_STACK_LISTEN=f"127.0.0.1:{listen}",
            BROWSER_STACK_ACTIVATION="proxy",
            BROWSER_REMOTE_DEBUGGING_PORT=str(cdp),
            MCP_SERVER_BROWSER_PORT=str(mcp),
            VNC_SERVER_PORT=str(vnc),
            WEBSOCKET_PROXY_PORT=str(ws),
            **{
                f"BROWSER_STACK_INTERNAL_{kind}_PORT": str(port)
                for kind, port in zip(("CDP", "MCP", "VNC", "WS"), internal, strict=True)
            },
        )
        assert serve(env) == EXIT_STARTUP
    err = capsys.readouterr().err
    assert f"cannot start: the activation proxy cannot listen on 127.0.0.1:{mcp} (mcp)" in err
    assert "Unclosed" not in err
    gc.collect()  # an unclosed session would warn here, an error under filterwarnings
    with socket.create_server(("127.0.0.1", cdp)):  # the proxy let its CDP port go
        pass
