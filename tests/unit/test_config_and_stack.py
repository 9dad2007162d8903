from __future__ import annotations

import asyncio
import base64
import socket
import xmlrpc.client
from pathlib import Path

import pytest

from browser_stack.config import INTERNAL_OFFSET, MAX_ENSURE_TIMEOUT_S, Settings
from browser_stack.errors import (
    BadRequest,
    ConfigError,
    ProgramFailed,
    SupervisorError,
    SupervisorLate,
    SupervisorUnavailable,
    UnknownProgram,
)
from browser_stack.http_api import parse_ensure_body
from browser_stack.stack import (
    PORTS,
    PROGRAMS,
    Program,
    dependents_of,
    parse_gates,
    parse_program,
    programs_for,
    stop_layers,
)
from browser_stack.stack_reader import endpoints
from browser_stack.supervisor import (
    START_FAULTS,
    STOP_FAULTS,
    XmlRpcSupervisor,
    loads_response,
    map_fault,
)


def test_defaults_follow_the_aio_image() -> None:
    s = Settings.from_env({})
    assert s.supervisor_url == "unix:///var/run/supervisor.sock"
    assert str(s.listen) == "127.0.0.1:8110"
    assert (s.cdp_port, s.mcp_port, s.vnc_port, s.websocket_port) == (9222, 8100, 5900, 6080)
    assert s.x11_socket == "/tmp/.X11-unix/X99"


def test_display_with_screen_and_aio_variables() -> None:
    s = Settings.from_env(
        {
            "DISPLAY": ":42.0",
            "BROWSER_REMOTE_DEBUGGING_PORT": "19222",
            "BROWSER_STACK_LISTEN": "unix:/run/bs.sock",
        }
    )
    assert s.x11_socket == "/tmp/.X11-unix/X42"
    assert s.cdp_port == 19222
    assert s.listen.path == "/run/bs.sock"


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"BROWSER_REMOTE_DEBUGGING_PORT": "http"}, "not a port"),
        ({"VNC_SERVER_PORT": "70000"}, "between 1 and 65535"),
        ({"DISPLAY": "remote:1"}, "local display"),
        ({"DISPLAY": "nonsense"}, "X display"),
        ({"BROWSER_STACK_LISTEN": "0.0.0.0:8110"}, "BROWSER_STACK_TOKEN"),
        ({"BROWSER_STACK_LISTEN": "8110"}, "host:port"),
        ({"BROWSER_STACK_ENSURE_TIMEOUT": "-3"}, "more than 0"),
        ({"SUPERVISOR_SERVER_URL": "ftp://x"}, "unix:// or http://"),
        ({"SUPERVISOR_USERNAME": "u"}, "both"),
        ({"MCP_SERVER_BROWSER_PORT": "9222"}, "both 9222"),
        (
            {"BROWSER_STACK_ACTIVATION": "proxy", "BROWSER_REMOTE_DEBUGGING_PORT": "60000"},
            "set BROWSER_STACK_INTERNAL_CDP_PORT",
        ),
        ({"BROWSER_STACK_INTERNAL_MCP_PORT": "70000"}, "between 1 and 65535"),
        # The variable allowed 600 s while a body could ask 300: every ensure
        # without timeout_s answered 400.
        ({"BROWSER_STACK_ENSURE_TIMEOUT": "400"}, "at most 300"),
        ({"SUPERVISOR_SERVER_URL": "http://"}, "names no host"),
        ({"SUPERVISOR_SERVER_URL": "http://host:port"}, "SUPERVISOR_SERVER_URL='http://host:port'"),
        ({"BROWSER_STACK_LISTEN": "127.0.0.1:99999"}, "BROWSER_STACK_LISTEN='127.0.0.1:99999'"),
        ({"BROWSER_STACK_LISTEN": "127.0.0.1:9222"}, "BROWSER_REMOTE_DEBUGGING_PORT"),
        (
            {"BROWSER_STACK_LISTEN": "127.0.0.1:6081", "WEBSOCKET_PROXY_PORT": "6081"},
            "a port of its own",
        ),
    ],
)
def test_bad_settings_are_one_clear_error(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)
    assert fragment in caught.value.message


def test_the_ensure_timeout_limit_is_one_for_the_variable_and_the_body() -> None:
    s = Settings.from_env({"BROWSER_STACK_ENSURE_TIMEOUT": str(MAX_ENSURE_TIMEOUT_S)})
    assert parse_ensure_body({}, s.ensure_timeout_s).timeout_s == MAX_ENSURE_TIMEOUT_S
    asked = parse_ensure_body({"timeout_s": MAX_ENSURE_TIMEOUT_S}, 30)
    assert asked.timeout_s == MAX_ENSURE_TIMEOUT_S
    with pytest.raises(BadRequest):
        parse_ensure_body({"timeout_s": MAX_ENSURE_TIMEOUT_S + 1}, 30)


@pytest.mark.parametrize(
    ("value", "command"),
    [
        ("", ""),
        ("true", "xprop"),
        ("YES", "xprop"),
        ("0", ""),
        ("/usr/bin/xprop", "/usr/bin/xprop"),
    ],
)
def test_xprop_is_a_switch_or_the_command(value: str, command: str) -> None:
    # Set to "true" it was taken as the command "true", which never finds a WM.
    assert Settings.from_env({"BROWSER_STACK_XPROP": value}).xprop == command


def test_non_loopback_with_token_is_allowed_and_secrets_stay_out_of_repr() -> None:
    s = Settings.from_env(
        {
            "BROWSER_STACK_LISTEN": "0.0.0.0:8110",
            "BROWSER_STACK_TOKEN": "tok-123",
            "SUPERVISOR_USERNAME": "admin",
            "SUPERVISOR_PASSWORD": "pw-456",
        }
    )
    assert "tok-123" not in repr(s)
    assert "pw-456" not in repr(s)


def test_allowlist_is_exactly_the_five() -> None:
    assert [str(p) for p in PROGRAMS] == [
        "tigervnc",
        "openbox",
        "browser",
        "mcp-server-browser",
        "websocat",
    ]
    with pytest.raises(UnknownProgram) as caught:
        parse_program("sshd")
    assert caught.value.fields["allowed"] == list(PROGRAMS)
    # The adapter refuses it before a byte is sent (there is no supervisord here).
    supervisor = XmlRpcSupervisor("unix:///nonexistent/supervisor.sock")
    with pytest.raises(ValueError, match="allowlist"):
        asyncio.run(supervisor.start("sshd"))  # type: ignore[arg-type]


def test_gates_map_to_programs() -> None:
    assert programs_for(parse_gates(["cdp"])) == {Program.BROWSER}
    assert programs_for(parse_gates(["mcp"])) == {Program.BROWSER, Program.MCP_SERVER_BROWSER}
    assert programs_for(parse_gates(["vnc"])) == {
        Program.TIGERVNC,
        Program.OPENBOX,
        Program.WEBSOCAT,
    }
    with pytest.raises(BadRequest):
        parse_gates(["cdp", "x"])


def test_stop_layers_reverse_the_dependencies() -> None:
    layers = stop_layers()
    assert layers[0] == {Program.MCP_SERVER_BROWSER, Program.OPENBOX, Program.WEBSOCAT}
    assert layers[1] == {Program.BROWSER}
    assert layers[2] == {Program.TIGERVNC}
    assert dependents_of(Program.TIGERVNC) == set(PROGRAMS) - {Program.TIGERVNC}
    assert dependents_of(Program.BROWSER) == {Program.MCP_SERVER_BROWSER}


START = "supervisor.startProcess"


def test_fault_table_makes_start_and_stop_idempotent() -> None:
    fault = xmlrpc.client.Fault
    assert map_fault(START_FAULTS, fault(60, "ALREADY_STARTED"), START, "browser") is False
    assert map_fault(STOP_FAULTS, fault(70, "NOT_RUNNING"), START, "browser") is False


@pytest.mark.parametrize(("code", "retryable"), [(10, False), (20, False), (21, False), (50, True)])
def test_start_faults_become_program_failures(code: int, retryable: bool) -> None:
    with pytest.raises(ProgramFailed) as caught:
        map_fault(START_FAULTS, xmlrpc.client.Fault(code, "x"), START, "browser")
    assert caught.value.fields["program"] == "browser"
    assert caught.value.retryable is retryable


def test_unexpected_fault_is_a_supervisor_error() -> None:
    with pytest.raises(SupervisorError):
        map_fault(START_FAULTS, xmlrpc.client.Fault(2, "INCORRECT_PARAMETERS"), START, "browser")


def test_shutting_down_is_unavailable_whatever_the_call() -> None:
    with pytest.raises(SupervisorUnavailable):
        map_fault({}, xmlrpc.client.Fault(6, "SHUTDOWN_STATE"), "supervisor.getAllProcessInfo")


@pytest.mark.parametrize(
    "value",
    [
        [{"name": "browser", "state": 20, "pid": 7, "spawnerr": "", "description": "a < b & c"}],
        ["tail text", 2000, False],
        True,
        0,
        "",
        [],
        {},
        # Not sent by supervisord: left to xmlrpc.client.
        3.5,
        b"\x00bytes",
        [{"nested": [1, "two", {"three": 3.0}]}],
    ],
)
def test_xmlrpc_responses_decode_like_xmlrpc_client(value: object) -> None:
    payload = xmlrpc.client.dumps((value,), methodresponse=True).encode()
    assert loads_response(payload) == xmlrpc.client.loads(payload, use_builtin_types=True)[0][0]
    # A value without a type element is a string.
    bare = b"<methodResponse><params><param><value>plain</value></param></params></methodResponse>"
    assert loads_response(bare) == "plain"


def test_xmlrpc_fault_decodes_to_a_fault() -> None:
    payload = xmlrpc.client.dumps(xmlrpc.client.Fault(60, "ALREADY_STARTED: browser")).encode()
    with pytest.raises(xmlrpc.client.Fault) as caught:
        loads_response(payload)
    assert (caught.value.faultCode, caught.value.faultString) == (60, "ALREADY_STARTED: browser")


async def _http_server(status: bytes, body: bytes, seen: list[bytes]) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
        seen.append(head + await reader.readexactly(length))
        writer.write(b"HTTP/1.0 " + status + b"\r\nContent-Type: text/xml\r\n\r\n" + body)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def test_xmlrpc_over_http_sends_one_request_with_credentials() -> None:
    seen: list[bytes] = []
    infos = [{"name": "browser", "group": "browser", "state": 20, "pid": 7}]
    answer = xmlrpc.client.dumps((infos,), methodresponse=True).encode()
    async with await _http_server(b"200 OK", answer, seen) as server:
        port = server.sockets[0].getsockname()[1]
        sup = XmlRpcSupervisor(f"http://127.0.0.1:{port}", "user", "secret")
        assert (await sup.process_info())[Program.BROWSER].pid == 7
    request = seen[0]
    assert request.startswith(b"POST /RPC2 HTTP/1.0\r\n")
    assert b"Authorization: Basic " + base64.b64encode(b"user:secret") in request
    method = xmlrpc.client.loads(request.split(b"\r\n\r\n", 1)[1])[1]
    assert method == "supervisor.getAllProcessInfo"


async def test_a_fault_to_get_all_process_info_is_a_supervisor_error() -> None:
    # It escaped as a raw xmlrpc.client.Fault: a plain-text 500 on every endpoint.
    answer = xmlrpc.client.dumps(xmlrpc.client.Fault(1, "UNKNOWN_METHOD")).encode()
    async with await _http_server(b"200 OK", answer, []) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(SupervisorError) as caught:
            await XmlRpcSupervisor(f"http://127.0.0.1:{port}").process_info()
    assert caught.value.fields["fault"] == 1
    assert "getAllProcessInfo" in caught.value.message


async def test_a_fault_to_a_stderr_tail_is_an_empty_tail() -> None:
    answer = xmlrpc.client.dumps(xmlrpc.client.Fault(70, "NOT_RUNNING")).encode()
    async with await _http_server(b"200 OK", answer, []) as server:
        port = server.sockets[0].getsockname()[1]
        assert await XmlRpcSupervisor(f"http://127.0.0.1:{port}").stderr_tail(Program.BROWSER) == ""


@pytest.mark.parametrize(
    ("status", "error"),
    [(b"401 Unauthorized", SupervisorError), (b"500 Oops", SupervisorUnavailable)],
)
async def test_xmlrpc_http_errors(status: bytes, error: type[Exception]) -> None:
    async with await _http_server(status, b"", []) as server:
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(error):
            await XmlRpcSupervisor(f"http://127.0.0.1:{port}").process_info()


async def test_xmlrpc_unreachable_is_supervisor_unavailable(tmp_path: Path) -> None:
    with pytest.raises(SupervisorUnavailable) as caught:
        await XmlRpcSupervisor(f"unix://{tmp_path}/none.sock").process_info()
    assert caught.value.fields["supervisor_url"] == f"unix://{tmp_path}/none.sock"
    assert not isinstance(caught.value, SupervisorLate)


async def test_a_socket_nobody_listens_on_is_unavailable_not_late(tmp_path: Path) -> None:
    # supervisord gone, its socket file left behind: refused, a 503 at once.
    path = tmp_path / "left.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as left:
        left.bind(str(path))
        with pytest.raises(SupervisorUnavailable) as caught:
            await XmlRpcSupervisor(f"unix://{path}", call_timeout_s=5).process_info()
    assert not isinstance(caught.value, SupervisorLate)
    assert "ConnectionRefusedError" in caught.value.message


async def test_a_supervisord_that_takes_the_call_and_does_not_answer_is_late(
    tmp_path: Path,
) -> None:
    # Connected, the request read, no answer (busy, or SIGSTOPped): late.
    path = tmp_path / "slow.sock"
    held: list[asyncio.StreamWriter] = []

    async def take(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.readuntil(b"\r\n\r\n")

    server = await asyncio.start_unix_server(take, str(path))
    async with server:
        with pytest.raises(SupervisorLate) as caught:
            await XmlRpcSupervisor(f"unix://{path}", call_timeout_s=0.2).process_info()
        for writer in held:
            writer.close()
    assert "did not answer supervisor.getAllProcessInfo within 0.2 s" in caught.value.message
    assert held  # the call did connect


def test_high_public_ports_need_no_internal_ports_without_the_proxy() -> None:
    # CI once picked 59427 for CDP: +10000 does not fit, and nothing uses it.
    s = Settings.from_env({"BROWSER_REMOTE_DEBUGGING_PORT": "59427"})
    assert s.cdp_port == 59427
    assert s.program_ports["cdp"] == 59427


def test_high_public_ports_with_the_proxy_take_the_internal_ports_set() -> None:
    s = Settings.from_env(
        {
            "BROWSER_STACK_ACTIVATION": "proxy",
            "BROWSER_REMOTE_DEBUGGING_PORT": "59427",
            "BROWSER_STACK_INTERNAL_CDP_PORT": "29427",
        }
    )
    assert s.program_ports["cdp"] == 29427
    assert s.public_ports["cdp"] == 59427


def test_the_gateway_waits_longer_than_any_ensure_may() -> None:
    # nginx would cut an ensure (or a gate's wait) off before the sidecar's 504.
    conf = (Path(__file__).parents[2] / "deploy" / "nginx" / "browser-stack.conf").read_text()
    timeouts = [
        int(line.split()[1].rstrip("s;"))
        for line in conf.splitlines()
        if line.strip().startswith("proxy_read_timeout")
    ]
    assert len(timeouts) == 4  # /browser-stack/ and the three gates
    assert all(t > MAX_ENSURE_TIMEOUT_S for t in timeouts)


def test_settings_take_every_port_from_the_port_table() -> None:
    eager, built = Settings.from_env({}), Settings()
    proxy = Settings.from_env({"BROWSER_STACK_ACTIVATION": "proxy"})
    moved = Settings.from_env({p.variable: str(20000 + i) for i, p in enumerate(PORTS)})
    for i, port in enumerate(PORTS):
        assert eager.public_ports[port.name] == built.public_ports[port.name] == port.default
        assert eager.program_ports[port.name] == port.default
        assert proxy.program_ports[port.name] == port.default + INTERNAL_OFFSET
        assert moved.public_ports[port.name] == 20000 + i
        assert str(20000 + i) in endpoints(moved, "")[port.name]
