"""The doctor against the real supervisord and the real sidecar: generated
families of layouts, each the project's own supervisord.d with one change.

Every layout goes to `browser-stack doctor --static --config` and to supervisord
booted on it through bin/browser-stack-entrypoint, with the real sidecar and
stand-ins for the five (tests/integration/layouts.py); then an ensure through the
sidecar, as a browser tool would call it. The property, for every layout: no
check fails when the layout comes up, and some check fails when it does not.
Each failing check's fix is applied and the doctor asked again: that check
passes and nothing else starts failing; when nothing fails any more, the layout
comes up for real. The families of the flags Chromium and Xvnc read, with the
real programs, are in tests/e2e/test_doctor_flags_real.py.
"""

from __future__ import annotations

import functools
import hashlib
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from .layouts import (
    FIVE,
    Case,
    Change,
    Layout,
    Result,
    case,
    command,
    disagreements,
    env,
    get_option,
    option,
    remove,
    run_doctor,
    run_selected,
    swap,
)

SIDECAR = "program:browser-stack"
# Where a variable can reach the sidecar: the container's environment (through
# the entrypoint), supervisord's environment=, the sidecar program's own.
LAYERS = ("environment", "supervisord", SIDECAR)
WORKERS = 10


def spare(i: int) -> Callable[[Layout], str]:
    return lambda layout: str(layout.spare_ports[i])


def proxied(where: str) -> Callable[[Layout], list[Change]]:
    """The activation proxy, with internal ports of its own, set in one layer."""

    def changes(layout: Layout) -> list[Change]:
        internal = dict(zip(("CDP", "MCP", "VNC", "WS"), layout.spare_ports[2:6], strict=True))
        out = [env("BROWSER_STACK_ACTIVATION", "proxy", where)]
        out += [env(f"BROWSER_STACK_INTERNAL_{k}_PORT", str(p), where) for k, p in internal.items()]
        return out

    return changes


def _set_in(name: str, value: Callable[[Layout], str], where: str, layout: Layout) -> list[Change]:
    return [env(name, value(layout), where)]


def settings_family() -> list[Case]:
    """A sidecar variable, valid or not, set in each of the three layers."""
    values: list[tuple[str, str, Callable[[Layout], str]]] = [
        ("another cdp port", "BROWSER_REMOTE_DEBUGGING_PORT", spare(0)),
        ("a cdp port that is not one", "BROWSER_REMOTE_DEBUGGING_PORT", lambda _: "http"),
        ("an idle timeout", "BROWSER_STACK_IDLE_TIMEOUT", lambda _: "300"),
        ("an idle timeout that is not one", "BROWSER_STACK_IDLE_TIMEOUT", lambda _: "soon"),
        (
            "another listen port",
            "BROWSER_STACK_LISTEN",
            lambda la: f"127.0.0.1:{la.spare_ports[1]}",
        ),
        (
            "listen beyond loopback",
            "BROWSER_STACK_LISTEN",
            lambda la: f"0.0.0.0:{la.spare_ports[1]}",
        ),
        ("another display", "DISPLAY", lambda _: ":5"),
        ("another supervisord URL", "SUPERVISOR_SERVER_URL", lambda la: f"unix://{la.root}/x.sock"),
    ]
    cases = []
    for label, name, value in values:
        for where in LAYERS:
            change = functools.partial(_set_in, name, value, where)
            cases.append(Case("sidecar-settings", f"{label} in {where}", change))
    for where in LAYERS:
        cases.append(Case("sidecar-settings", f"the activation proxy in {where}", proxied(where)))
    return cases


def supervisord_family() -> list[Case]:
    """What supervisord reads of its own section, and of the files as a whole."""
    f = "supervisord"
    return [
        case(f, "a user that does not exist", option("supervisord", "user", "nosuchuser")),
        case(f, "user root", option("supervisord", "user", "root")),
        case(
            f,
            "logfile in a missing directory",
            lambda la: option("supervisord", "logfile", f"{la.root}/missing/supervisord.log"),
        ),
        case(
            f,
            "childlogdir missing",
            lambda la: option("supervisord", "childlogdir", f"{la.root}/missing"),
        ),
        case(f, "a loglevel that is not one", option("supervisord", "loglevel", "chatty")),
        case(f, "minfds that is not a number", option("supervisord", "minfds", "many")),
        case(f, "environment= without a value", option("supervisord", "environment", 'A="1",B')),
        case(
            f,
            "a log directory the entrypoint creates",
            lambda la: env("BROWSER_STACK_LOG_DIR", f"{la.root}/later/log"),
        ),
        case(
            f,
            "supervisord's log in the directory the entrypoint creates",
            lambda la: env("BROWSER_STACK_LOG_DIR", f"{la.root}/later/log"),
            option("supervisord", "logfile", "%(ENV_BROWSER_STACK_LOG_DIR)s/supervisord.log"),
        ),
        case(
            f,
            "a log directory under a file",
            {"edit": "write-file", "path": "afile", "text": "x"},
            lambda la: env("BROWSER_STACK_LOG_DIR", f"{la.root}/afile/log"),
        ),
        case(
            f,
            "a line that is not an option",
            {"edit": "append-line", "section": "program:openbox", "line": "this is not an option"},
        ),
        case(
            f,
            "a variable nobody sets",
            option("program:openbox", "environment", 'DISPLAY="%(ENV_NOT_SET_ANYWHERE)s"'),
        ),
        case(
            f,
            "a program's log in a missing directory",
            lambda la: option("program:websocat", "stdout_logfile", f"{la.root}/missing/ws.log"),
        ),
        case(
            f,
            "a program's user that does not exist",
            option("program:websocat", "user", "nosuchuser"),
        ),
    ]


def _sha(password: str) -> str:
    return "{SHA}" + hashlib.sha1(password.encode()).hexdigest()


def rpc_family() -> list[Case]:
    """What the sidecar needs of supervisord: a server it can reach, with the
    credentials it has, and the supervisor rpcinterface."""
    f = "supervisor-rpc"
    auth = [
        option("unix_http_server", "username", "admin"),
        option("unix_http_server", "password", "s3cret"),
    ]
    given = [
        env("SUPERVISOR_USERNAME", "admin", SIDECAR),
        env("SUPERVISOR_PASSWORD", "s3cret", SIDECAR),
    ]
    return [
        case(f, "no unix_http_server", remove("unix_http_server")),
        case(
            f,
            "an inet_http_server instead",
            remove("unix_http_server"),
            lambda la: option("inet_http_server", "port", f"127.0.0.1:{la.spare_ports[0]}"),
        ),
        case(
            f,
            "an inet_http_server too",
            lambda la: option("inet_http_server", "port", f"127.0.0.1:{la.spare_ports[0]}"),
        ),
        case(f, "no rpcinterface", remove("rpcinterface:supervisor")),
        case(
            f,
            "the rpcinterface under another name",
            {
                "edit": "rename-section",
                "section": "rpcinterface:supervisor",
                "to": "rpcinterface:other",
            },
        ),
        case(f, "a password the sidecar does not have", *auth),
        case(f, "a password the sidecar has", *auth, *given),
        case(
            f,
            "a hashed password the sidecar has",
            *auth,
            option("unix_http_server", "password", _sha("s3cret")),
            *given,
        ),
        case(
            f,
            "a password the sidecar has wrong",
            *auth,
            *given[:1],
            env("SUPERVISOR_PASSWORD", "wrong", SIDECAR),
        ),
        case(
            f,
            "the socket in a missing directory",
            lambda la: option("unix_http_server", "file", f"{la.root}/missing/supervisor.sock"),
        ),
        case(
            f,
            "the sidecar's serverurl= elsewhere",
            lambda la: option(SIDECAR, "serverurl", f"unix://{la.root}/x.sock"),
        ),
    ]


def programs_family() -> list[Case]:
    """Each of the five: missing, renamed, in a group, two processes."""
    f = "programs"
    cases = []
    for program in FIVE:
        section = f"program:{program}"
        cases += [
            case(f, f"no {program}", remove(section)),
            case(
                f,
                f"{program} renamed",
                {"edit": "rename-section", "section": section, "to": f"program:{program}2"},
            ),
            case(f, f"{program} in a group", option("group:desktop", "programs", program)),
            case(
                f,
                f"{program} twice",
                option(section, "numprocs", "2"),
                option(section, "process_name", "%(program_name)s_%(process_num)s"),
            ),
        ]
    cases.append(
        case(
            f,
            "browser's process under another name",
            option("program:browser", "process_name", "chrome"),
        )
    )
    return cases


def sidecar_program_family() -> list[Case]:
    """The sidecar's own program: it starts at boot and comes back if it dies."""
    f = "sidecar-program"
    py = sys.executable
    return [
        case(f, "autostart=false", option(SIDECAR, "autostart", "false"), restart=True),
        case(f, "autorestart=false", option(SIDECAR, "autorestart", "false"), restart=True),
        case(
            f, "autorestart=unexpected", option(SIDECAR, "autorestart", "unexpected"), restart=True
        ),
        case(f, "no sidecar", remove(SIDECAR), restart=True),
        case(
            f,
            "python -m browser_stack serve",
            option(SIDECAR, "command", f"{py} -m browser_stack serve"),
            restart=True,
        ),
    ]


def executables_family() -> list[Case]:
    """What supervisord needs to spawn a program, for two of them."""
    f = "executables"
    cases = []
    for program, exe in (("browser", "chromium"), ("websocat", "websocat")):
        section = f"program:{program}"

        def argv0(
            word: Callable[[Layout], str], program: str = program
        ) -> Callable[[Layout], Change]:
            def change(layout: Layout) -> Change:
                words = (get_option(layout, f"program:{program}", "command") or "").split(" ")
                return option(f"program:{program}", "command", " ".join([word(layout), *words[1:]]))

            return change

        cases += [
            # supervisord runs in root/work: a relative path is resolved there, not
            # beside the config file.
            case(
                f,
                f"{program} by a relative path from the working directory",
                argv0(lambda _, exe=exe: f"../bin/{exe}"),
            ),
            case(
                f,
                f"{program} by a path relative to the config file",
                argv0(lambda _, exe=exe: f"bin/{exe}"),
            ),
            case(
                f,
                f"{program} with an unbalanced quote",
                command(program, lambda w: " ".join(w) + ' --x="a'),
            ),
            case(
                f,
                f"{program} in a directory that does not exist",
                lambda la, s=section: option(s, "directory", f"{la.root}/missing"),
            ),
            case(
                f,
                f"{program} in a directory that exists",
                lambda la, s=section: option(s, "directory", str(la.root)),
            ),
            case(f, f"{program} with an empty command", option(section, "command", "")),
            case(f, f"{program} not on PATH", argv0(lambda _, exe=exe: f"{exe}-missing")),
            case(
                f,
                f"{program} not executable",
                {
                    "edit": "write-file",
                    "path": "files/noexec",
                    "text": "#!/bin/sh\n",
                    "mode": 0o644,
                },
                argv0(lambda la: f"{la.root}/files/noexec"),
            ),
            case(f, f"{program} a directory", argv0(lambda la: f"{la.root}/bin")),
        ]
    return cases


def autostart_family() -> list[Case]:
    f = "autostart"
    cases = [
        case(f, f"lazy, {p} autostart=true", option(f"program:{p}", "autostart", "true"))
        for p in FIVE
    ]
    cases.append(case(f, "eager", lazy=False))
    cases.append(
        case(
            f,
            "eager, browser autostart=false",
            option("program:browser", "autostart", "false"),
            lazy=False,
        )
    )
    return cases


def display_family() -> list[Case]:
    f = "x-clients-display"
    return [
        case(
            f,
            "openbox on another display",
            option("program:openbox", "environment", 'DISPLAY=":5"'),
        ),
        case(
            f,
            "browser on another display",
            option("program:browser", "environment", 'DISPLAY=":5"'),
        ),
        case(
            f,
            "browser on the display's screen 0",
            option("program:browser", "environment", 'DISPLAY=":99.0"'),
        ),
        case(
            f,
            "openbox with the container's DISPLAY",
            option("program:openbox", "environment", None),
        ),
        case(
            f,
            "browser told --display=:5",
            command("browser", lambda w: " ".join(w) + " --display=:5"),
        ),
        case(
            f,
            "browser told --display=:99",
            command("browser", lambda w: " ".join(w) + " --display=:99"),
        ),
    ]


def ports_family() -> list[Case]:
    """A port in a command that is not the sidecar's (the stand-ins take the forms
    the programs file uses; tests/e2e has the real programs' own forms)."""
    f = "command-ports"

    mcp, ws, vnc, cdp = (f"ENV_BROWSER_STACK_PROGRAM_{k}_PORT" for k in ("MCP", "WS", "VNC", "CDP"))
    return [
        case(
            f,
            "mcp-server-browser on another port",
            swap(
                "mcp-server-browser", f"--port %({mcp})s", lambda la: f"--port {la.spare_ports[0]}"
            ),
        ),
        case(
            f,
            "mcp-server-browser --port=",
            swap("mcp-server-browser", f"--port %({mcp})s", lambda _: f"--port=%({mcp})s"),
        ),
        case(
            f,
            "mcp-server-browser's --cdp-endpoint elsewhere",
            swap(
                "mcp-server-browser",
                f"http://127.0.0.1:%({cdp})s",
                lambda la: f"http://127.0.0.1:{la.spare_ports[0]}",
            ),
        ),
        case(
            f,
            "websocat listening elsewhere",
            swap(
                "websocat",
                f"ws-l:127.0.0.1:%({ws})s",
                lambda la: f"ws-l:127.0.0.1:{la.spare_ports[0]}",
            ),
        ),
        case(
            f,
            "websocat forwarding elsewhere",
            swap(
                "websocat",
                f"tcp:127.0.0.1:%({vnc})s",
                lambda la: f"tcp:127.0.0.1:{la.spare_ports[0]}",
            ),
        ),
        case(
            f,
            "Xvnc on another port",
            swap("tigervnc", f"-rfbport %({vnc})s", lambda la: f"-rfbport {la.spare_ports[0]}"),
        ),
    ]


CASES = [
    *settings_family(),
    *supervisord_family(),
    *rpc_family(),
    *programs_family(),
    *sidecar_program_family(),
    *executables_family(),
    *autostart_family(),
    *display_family(),
    *ports_family(),
]


@pytest.fixture(scope="module")
def results(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Result | BaseException]:
    root = tmp_path_factory.mktemp("fam")
    return run_selected(request.session.items, __name__, root, WORKERS)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_the_doctor_agrees_with_supervisord(
    case: Case, results: dict[str, Result | BaseException]
) -> None:
    result = results[case.id]
    if isinstance(result, BaseException):
        raise result
    assert not disagreements(result), result.describe() + "\n" + "\n".join(disagreements(result))


# --- the --config argument ------------------------------------------------------------


@pytest.mark.parametrize("config", ["", "missing.conf", "."])
def test_a_config_supervisord_cannot_read_is_a_usage_error(tmp_path: Path, config: str) -> None:
    """What supervisord -c refuses, the doctor refuses as a bad argument: exit 2, one line."""
    import subprocess

    from .layouts import base_layout

    layout = base_layout(tmp_path / "l")
    doctor = run_doctor(layout, config)
    supervisord = subprocess.run(
        [sys.executable, "-m", "supervisor.supervisord", "-n", "-c", config],
        cwd=layout.cwd,
        env=layout.env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert supervisord.returncode != 0, supervisord
    assert doctor.code == 2, doctor
    assert doctor.report is None
    assert doctor.stderr.count("\n") == 1 and "Traceback" not in doctor.stderr, doctor.stderr
