"""The fixed allowlist: the five programs, their dependencies and gates.

Nothing outside this module names a program; nothing a request carries can add
one. Dependencies are of two kinds: what a program needs ready before it may be
spawned, and what a gate needs ready before a caller may use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

from browser_stack.errors import BadRequest, UnknownProgram


class Program(StrEnum):
    TIGERVNC = "tigervnc"
    OPENBOX = "openbox"
    BROWSER = "browser"
    MCP_SERVER_BROWSER = "mcp-server-browser"
    WEBSOCAT = "websocat"


class Gate(StrEnum):
    CDP = "cdp"
    MCP = "mcp"
    VNC = "vnc"


PROGRAMS: tuple[Program, ...] = tuple(Program)
GATES: tuple[Gate, ...] = tuple(Gate)

# Ready before spawn. Chromium, openbox and websocat need the X display (and
# websocat the VNC port behind it); mcp-server-browser opens its port without a
# browser and connects to CDP on its first tool call, so it needs nothing.
SPAWN_AFTER: dict[Program, frozenset[Program]] = {
    Program.TIGERVNC: frozenset(),
    Program.OPENBOX: frozenset({Program.TIGERVNC}),
    Program.BROWSER: frozenset({Program.TIGERVNC}),
    Program.MCP_SERVER_BROWSER: frozenset(),
    Program.WEBSOCAT: frozenset({Program.TIGERVNC}),
}

# Ready before a gate opens.
GATE_PROGRAMS: dict[Gate, tuple[Program, ...]] = {
    Gate.CDP: (Program.BROWSER,),
    Gate.MCP: (Program.MCP_SERVER_BROWSER, Program.BROWSER),
    Gate.VNC: (Program.TIGERVNC, Program.OPENBOX, Program.WEBSOCAT),
}


@dataclass(frozen=True)
class Port:
    """One of the stack's four ports, and everything that names it."""

    # The key of Settings.public_ports and program_ports, of the proxy's routes
    # and of the endpoints clients are given.
    name: str
    # The AIO image's variable for it, and its default there.
    variable: str
    default: int
    # Behind the activation proxy the program listens on
    # BROWSER_STACK_INTERNAL_<kind>_PORT; the entrypoint passes the port the
    # program listens on to supervisord's files as BROWSER_STACK_PROGRAM_<kind>_PORT.
    kind: str
    # The Settings field with the public port; internal_<setting> the internal one.
    setting: str
    program: Program
    gate: Gate
    # Where a client connects, as /status and ensure give it ({host}, {port}).
    url: str

    @property
    def internal_variable(self) -> str:
        return f"BROWSER_STACK_INTERNAL_{self.kind}_PORT"

    @property
    def program_variable(self) -> str:
        return f"BROWSER_STACK_PROGRAM_{self.kind}_PORT"

    @property
    def internal_setting(self) -> str:
        return f"internal_{self.setting}"


# The one table of ports, in the entrypoint's order. Settings, the entrypoint's
# mirror (boot.py), the probes, the proxy, the endpoints and the doctor read it;
# tests/image/test_entrypoint.py checks the entrypoint's own defaults against it.
# fmt: off
PORTS: tuple[Port, ...] = (
    Port("vnc", "VNC_SERVER_PORT", 5900, "VNC", "vnc_port",
         Program.TIGERVNC, Gate.VNC, "{host}:{port}"),
    Port("cdp", "BROWSER_REMOTE_DEBUGGING_PORT", 9222, "CDP", "cdp_port",
         Program.BROWSER, Gate.CDP, "http://{host}:{port}"),
    Port("mcp", "MCP_SERVER_BROWSER_PORT", 8100, "MCP", "mcp_port",
         Program.MCP_SERVER_BROWSER, Gate.MCP, "http://{host}:{port}/sse"),
    Port("vnc_ws", "WEBSOCKET_PROXY_PORT", 6080, "WS", "websocket_port",
         Program.WEBSOCAT, Gate.VNC, "ws://{host}:{port}"),
)
# fmt: on
PORT_BY_NAME: dict[str, Port] = {p.name: p for p in PORTS}
# Which gate each public port serves, and which program listens on each port.
PORT_GATES: dict[str, Gate] = {p.name: p.gate for p in PORTS}
PORT_PROGRAMS: dict[str, Program] = {p.name: p.program for p in PORTS}

# The X display Xvnc serves and the others draw on (DISPLAY), where X keeps its
# sockets, and the names an X server runs under: Xvnc's own (the doctor
# recognises tigervnc by them), then the others a lock file may name.
DEFAULT_DISPLAY = ":99"
X11_SOCKET_DIR = "/tmp/.X11-unix"
XVNC_NAMES = ("Xvnc", "Xtigervnc")
X_SERVER_NAMES = frozenset({*XVNC_NAMES, "Xvfb", "Xorg", "X", "Xwayland"})
# "[host]:N[.screen]", as the entrypoint reads DISPLAY: the number follows the
# last colon, the screen the first dot after it.
_DISPLAY_RE = re.compile(r"^(?P<host>.*):(?P<number>[0-9]+)(?:\.[^:]*)?$")


def split_display(value: str) -> tuple[str, int] | None:
    """DISPLAY's host and display number ("localhost:5.0" -> ("localhost", 5)),
    or None when it is not "[host]:N[.screen]"."""
    match = _DISPLAY_RE.match(value)
    if match is None:
        return None
    return match["host"], int(match["number"])


# Which of the five each of the AIO image's own off switches keeps stopped
# (switches.IMAGE_SWITCHES), as docs/aio-image.md has the image's program files read
# them: DISABLE_VNC is Xvnc's, and openbox and websocat, which live on its display,
# follow it (the image's files are not public; the AIO stand-in does the same).
# Chromium draws on Xvnc's display, so with DISABLE_VNC on no gate can open: in
# eager mode the image's browser has no display either.
DISABLED_BY: dict[str, frozenset[Program]] = {
    "DISABLE_BROWSER": frozenset({Program.BROWSER}),
    "DISABLE_MCP_BROWSER": frozenset({Program.MCP_SERVER_BROWSER}),
    "DISABLE_VNC": frozenset({Program.TIGERVNC, Program.OPENBOX, Program.WEBSOCAT}),
}

# What a program is useless without, for stopping in reverse order: its spawn
# needs plus what its gate needs (the MCP server drives the browser).
USES: dict[Program, frozenset[Program]] = {
    **SPAWN_AFTER,
    Program.MCP_SERVER_BROWSER: frozenset({Program.BROWSER}),
}


def parse_program(name: str) -> Program:
    try:
        return Program(name)
    except ValueError:
        raise UnknownProgram(name, PROGRAMS) from None


def parse_gates(names: Iterable[object]) -> frozenset[Gate]:
    gates: set[Gate] = set()
    for name in names:
        if not isinstance(name, str) or name not in Gate._value2member_map_:
            raise BadRequest(
                f"unknown need {json.dumps(name, default=str)}; allowed: {', '.join(GATES)}",
                allowed=list(GATES),
            )
        gates.add(Gate(name))
    return frozenset(gates)


def programs_for(gates: Iterable[Gate]) -> frozenset[Program]:
    return frozenset(p for g in gates for p in GATE_PROGRAMS[g])


def stop_layers() -> list[frozenset[Program]]:
    """Programs grouped so each layer only holds programs nothing left uses.

    Layers stop one after another; the programs within a layer in parallel.
    """
    remaining = set(PROGRAMS)
    layers: list[frozenset[Program]] = []
    while remaining:
        used = {dep for p in remaining for dep in USES[p]}
        layer = frozenset(p for p in remaining if p not in used)
        if not layer:  # a cycle would be a bug in the tables above
            raise RuntimeError(f"dependency cycle among {sorted(remaining)}")
        layers.append(layer)
        remaining -= layer
    return layers


def dependents_of(program: Program) -> frozenset[Program]:
    """Every program that, directly or not, uses `program`."""
    found: set[Program] = set()
    frontier = {program}
    while frontier:
        frontier = {p for p in PROGRAMS if USES[p] & frontier} - found
        found |= frontier
    return frozenset(found)


def spawn_closure(programs: Iterable[Program]) -> frozenset[Program]:
    """`programs` and everything they need ready before they are spawned."""
    found = set(programs)
    frontier = list(found)
    while frontier:
        for dependency in SPAWN_AFTER[frontier.pop()]:
            if dependency not in found:
                found.add(dependency)
                frontier.append(dependency)
    return frozenset(found)


def gate_alone(gate: Gate) -> frozenset[Program]:
    """What `gate` needs and CDP does not: what may stop while only CDP is used.
    What CDP needs (Chromium and the X display it draws on) goes only with the
    whole stack."""
    return spawn_closure(GATE_PROGRAMS[gate]) - spawn_closure(GATE_PROGRAMS[Gate.CDP])


def blocked(gates: Iterable[Gate], disabled: Iterable[Program]) -> dict[Gate, frozenset[Program]]:
    """The gates that cannot open because they need a disabled program (or one a
    disabled program must be up before), each with those programs."""
    off = frozenset(disabled)
    out = {}
    for gate in gates:
        needed = spawn_closure(GATE_PROGRAMS[gate]) & off
        if needed:
            out[gate] = needed
    return out
