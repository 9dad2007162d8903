"""The only module that speaks supervisord's XML-RPC.

It turns faults into our errors in one place (`map_fault`, with a table per
call: `START_FAULTS`, `STOP_FAULTS`), so no XML-RPC fault leaves it, and refuses
any program name outside the allowlist before a byte is sent.

What a call that does not succeed means, and how the timeouts bound each other:

- A refused or missing socket (or a connection supervisord drops) is
  `SupervisorUnavailable`: supervisord is not there, and an ensure answers 503
  at once.
- No answer within the call timeout (`CALL_TIMEOUT_S`; a stop waits for the
  program, so its call gets `BROWSER_STACK_STOP_TIMEOUT`) is `SupervisorLate`:
  supervisord is there and has not answered yet, which a single-threaded
  process among hundreds of runnable ones does. During a start that is not a
  failure: the start reads supervisord's state again and goes on probing
  (bringup.py), for as long as it lasts.
- So the call timeout bounds one question, never a start: it decides how long
  a question waits before it is asked again. What a caller waits for, start
  and calls included, is bounded by the ensure's deadline alone
  (`BROWSER_STACK_ENSURE_TIMEOUT` or the request's `timeout_s`): a call still
  waiting then is left to the start, which goes on, and the caller gets 504.
  The call timeout is kept well under the deadline (5 s against 30 s), so that
  a late answer is asked again several times before a caller gives up; a
  deadline shorter than it still answers on time.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
import urllib.parse
import xml.etree.ElementTree as ElementTree
import xmlrpc.client
from collections.abc import Callable, Mapping
from typing import Any

from browser_stack.core_types import ProcessInfo
from browser_stack.errors import (
    ProgramFailed,
    SupervisorError,
    SupervisorLate,
    SupervisorUnavailable,
)
from browser_stack.stack import PROGRAMS, Program
from browser_stack.states import Fault, ProcessState

log = logging.getLogger(__name__)

CALL_TIMEOUT_S = 5.0
STDERR_TAIL_BYTES = 2000
# Of supervisord's own log, read for how a process ended.
EXIT_LOG_BYTES = 8000


def _process_info(raw: dict[str, Any]) -> ProcessInfo:
    return ProcessInfo(
        name=str(raw.get("name", "")),
        state=ProcessState.parse(int(raw.get("state", ProcessState.UNKNOWN))),
        pid=int(raw.get("pid", 0)),
        start=int(raw.get("start", 0)),
        now=int(raw.get("now", 0)),
        spawnerr=str(raw.get("spawnerr", "")),
        exitstatus=int(raw.get("exitstatus", 0)),
        description=str(raw.get("description", "")),
    )


def _checked(program: Program) -> str:
    # Belt and braces: the type says Program, but a str can slip through a cast.
    if program not in PROGRAMS:
        raise ValueError(f"refusing to touch {program!r}: not in the allowlist")
    return str(program)


class XmlRpcSupervisor:
    """supervisord over its XML-RPC interface, on a unix socket or over HTTP."""

    def __init__(
        self,
        url: str,
        username: str | None = None,
        password: str | None = None,
        *,
        stop_timeout_s: float = 30.0,
        call_timeout_s: float = CALL_TIMEOUT_S,
        on_call: Callable[[str], None] | None = None,
    ) -> None:
        self._url = url
        self._stop_timeout_s = stop_timeout_s
        self._call_timeout_s = call_timeout_s
        # Told the method of every call (metrics count them).
        self._on_call = on_call
        headers = ["Content-Type: text/xml"]
        if url.startswith("unix://"):
            self._socket_path: str | None = url.removeprefix("unix://")
            self._address: tuple[str, int] = ("", 0)
            path = "/RPC2"
            headers.append("Host: localhost")
        else:
            parts = urllib.parse.urlsplit(url)
            self._socket_path = None
            self._address = (parts.hostname or "localhost", parts.port or 80)
            path = parts.path.rstrip("/") + "/RPC2"
            headers.append(f"Host: {parts.netloc}")
        if username and password:
            token = base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
            headers.append(f"Authorization: Basic {token}")
        self._head = (f"POST {path} HTTP/1.0\r\n" + "\r\n".join(headers) + "\r\n").encode()

    async def close(self) -> None:
        """Nothing to release: every call has a connection of its own."""

    async def _post(self, body: bytes) -> tuple[int, bytes]:
        """One HTTP/1.0 request on a fresh connection: (status, body).

        A connection per call: one to a supervisord that has since restarted
        would fail on its next use. HTTP/1.0, so that the answer ends where the
        connection does. A bare socket: a client library's machinery cost more
        CPU than supervisord takes to answer, on every state tick of a start,
        and an asyncio transport is left for the cyclic garbage collector.
        """
        loop = asyncio.get_running_loop()
        address: str | tuple[str, int]
        if self._socket_path is not None:
            sock, address = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), self._socket_path
        else:
            host, port = self._address
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock, address = socket.socket(family, socket.SOCK_STREAM), (host, port)
        chunks = []
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, address)
            await loop.sock_sendall(
                sock, self._head + b"Content-Length: %d\r\n\r\n" % len(body) + body
            )
            while chunk := await loop.sock_recv(sock, 65536):
                chunks.append(chunk)
        finally:
            sock.close()
        answer = b"".join(chunks)
        head, separator, payload = answer.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].split(None, 2)
        if not separator or len(status) < 2 or not status[0].startswith(b"HTTP/"):
            raise ConnectionError(f"not an HTTP answer ({len(answer)} bytes)")
        return int(status[1]), payload

    async def _call(
        self,
        method: str,
        *params: Any,
        faults: FaultTable | None = None,
        program: str = "",
        timeout_s: float | None = None,
    ) -> Any:
        """One XML-RPC call. A fault never leaves this module: `faults` (or, for
        a call without a table, SupervisorError) says what it means."""
        body = xmlrpc.client.dumps(params, method, allow_none=False).encode()
        if self._on_call is not None:
            self._on_call(method)
        timeout_s = self._call_timeout_s if timeout_s is None else timeout_s
        try:
            async with asyncio.timeout(timeout_s):
                status, payload = await self._post(body)
        except TimeoutError as exc:  # an OSError too: this comes first
            raise SupervisorLate(
                f"supervisord at {self._url} did not answer {method} within {timeout_s:g} s",
                supervisor_url=self._url,
            ) from exc
        except (OSError, ValueError) as exc:
            raise SupervisorUnavailable(
                f"supervisord at {self._url} is not reachable: {exc.__class__.__name__}: {exc}",
                supervisor_url=self._url,
            ) from exc
        if status == 401:
            raise SupervisorError(
                "supervisord refused our credentials (SUPERVISOR_USERNAME/PASSWORD)"
            )
        if status != 200:
            raise SupervisorUnavailable(f"supervisord answered HTTP {status} to {method}")
        try:
            return loads_response(payload)
        except xmlrpc.client.Fault as fault:
            return map_fault(faults or {}, fault, method, program)
        except Exception as exc:  # a malformed answer is not a fault we can map
            raise SupervisorError(f"supervisord sent an unreadable answer to {method}") from exc

    async def process_info(self) -> dict[Program, ProcessInfo]:
        raw = await self._call("supervisor.getAllProcessInfo")
        infos: dict[Program, ProcessInfo] = {}
        for entry in raw:
            # Only group-less names match ("group:name" is never one of ours).
            info = _process_info(entry)
            if entry.get("group") == info.name and info.name in PROGRAMS:
                infos[Program(info.name)] = info
        return infos

    async def start(self, program: Program) -> bool:
        name = _checked(program)
        # wait=False is positional on purpose: XML-RPC has no keyword arguments.
        if not await self._call(
            "supervisor.startProcess", name, False, faults=START_FAULTS, program=name
        ):
            return False
        log.info("start requested program=%s", name, extra={"program": name, "event": "start"})
        return True

    async def stop(self, program: Program) -> bool:
        name = _checked(program)
        if not await self._call(
            "supervisor.stopProcess",
            name,
            True,
            faults=STOP_FAULTS,
            program=name,
            timeout_s=self._stop_timeout_s,
        ):
            return False
        log.info(
            "stopped program=%s state=STOPPED",
            name,
            extra={"program": name, "state": "STOPPED", "event": "stopped"},
        )
        return True

    async def resume(self, program: Program) -> None:
        name = _checked(program)
        await self._call(
            "supervisor.signalProcess", name, "CONT", faults=_RESUME_FAULTS, program=name
        )

    async def config_info(self) -> dict[str, Any]:
        """supervisord's pid and every program's configuration as it loaded it,
        for the doctor: `{"pid": N, "programs": [{...}]}`.

        Each program: name, group, command (expanded), autostart, stopsignal (a
        signal number), killasgroup and directory (None when unset).
        supervisord does not say stopasgroup or a program's environment here.
        """
        pid = await self._call("supervisor.getPID")
        raw = await self._call("supervisor.getAllConfigInfo")
        programs = [
            {
                "name": str(entry["name"]),
                "group": str(entry["group"]),
                "command": str(entry["command"]),
                "autostart": bool(entry["autostart"]),
                "stopsignal": int(entry["stopsignal"]),
                "killasgroup": bool(entry["killasgroup"]),
                # XML-RPC has no None: supervisord sends the string 'none'.
                "directory": None if entry["directory"] == "none" else str(entry["directory"]),
            }
            for entry in raw
        ]
        return {"pid": int(pid), "programs": programs}

    async def stderr_tail(self, program: Program) -> str:
        name = _checked(program)
        try:
            text, _offset, _overflow = await self._call(
                "supervisor.tailProcessStderrLog", name, 0, STDERR_TAIL_BYTES
            )
            if not text:  # redirect_stderr=true sends it all to stdout
                text, _offset, _overflow = await self._call(
                    "supervisor.tailProcessStdoutLog", name, 0, STDERR_TAIL_BYTES
                )
        except (SupervisorError, SupervisorUnavailable):  # a detail of an error, not one
            return ""
        return str(text)

    async def exit_cause(self, program: Program) -> str:
        marker = f"exited: {_checked(program)} ("
        try:
            text = await self._call("supervisor.readLog", -EXIT_LOG_BYTES, 0)
        except SupervisorError:  # no log file (syslog, stdout), or not readable
            return ""
        for line in reversed(str(text).splitlines()):
            at = line.find(marker)
            if at >= 0:
                return line[at + len(marker) :].rstrip().removesuffix(")")
        return ""


def loads_response(payload: bytes) -> Any:
    """The value of an XML-RPC method response; raises xmlrpc.client.Fault.

    What `xmlrpc.client.loads` answers, three times faster for the types
    supervisord sends (int, string, boolean, array, struct): ElementTree builds
    the tree in C where xmlrpc.client calls Python for every tag, and this
    decodes getAllProcessInfo on every state tick of a start. Any other type
    goes to xmlrpc.client.
    """
    root = ElementTree.fromstring(payload)
    try:
        if root.tag != "methodResponse" or len(root) != 1:
            raise _Unsupported(root.tag)
        if root[0].tag == "fault":
            fault = _decode(root[0][0])
            raise xmlrpc.client.Fault(fault["faultCode"], fault["faultString"])
        return _decode(root[0][0][0])  # params/param/value
    except (_Unsupported, IndexError, KeyError, TypeError, ValueError):
        (result,), _ = xmlrpc.client.loads(payload, use_builtin_types=True)
        return result


class _Unsupported(Exception):
    pass


def _decode(value: ElementTree.Element) -> Any:
    if value.tag != "value":
        raise _Unsupported(value.tag)
    if len(value) == 0:  # no type: a string
        return value.text or ""
    typed = value[0]
    tag = typed.tag
    if tag in ("int", "i4"):
        return int(typed.text or "")
    if tag == "string":
        return typed.text or ""
    if tag == "boolean":
        return {"0": False, "1": True}[(typed.text or "").strip()]
    if tag == "array" and typed[0].tag == "data":
        return [_decode(item) for item in typed[0]]
    if tag == "struct":
        members = {}
        for member in typed:
            name, item = member  # ValueError unless exactly <name> and <value>
            if name.tag != "name":
                raise _Unsupported(name.tag)
            members[name.text or ""] = _decode(item)
        return members
    raise _Unsupported(tag)


# What each fault means for an idempotent start or stop: True/False is a
# success (spawned / was already so), a string is a failure message. One table
# per call that has one; any other fault is a SupervisorError.
FaultTable = Mapping[int, bool | str]
START_FAULTS: FaultTable = {
    Fault.ALREADY_STARTED: False,
    Fault.BAD_NAME: "is not configured in supervisord",
    Fault.NO_FILE: "has a command that does not exist",
    Fault.NOT_EXECUTABLE: "has a command that is not executable",
    Fault.SPAWN_ERROR: "could not be spawned",
    Fault.ABNORMAL_TERMINATION: "exited while starting",
}
STOP_FAULTS: FaultTable = {
    Fault.NOT_RUNNING: False,
    Fault.BAD_NAME: "is not configured in supervisord",
    Fault.FAILED: "did not stop",
}
# SIGCONT to a process that is not there has nothing to resume.
_RESUME_FAULTS: FaultTable = {Fault.NOT_RUNNING: False, Fault.BAD_NAME: False}

# A spawn that failed may work next time; a missing program or file will not.
_RETRYABLE_FAULTS = frozenset({Fault.SPAWN_ERROR, Fault.ABNORMAL_TERMINATION, Fault.FAILED})


def map_fault(
    table: FaultTable, fault: xmlrpc.client.Fault, method: str, program: str = ""
) -> bool:
    """What a fault means: a success (True/False), or one of our errors raised."""
    if fault.faultCode == Fault.SHUTDOWN_STATE:
        raise SupervisorUnavailable("supervisord is shutting down")
    outcome = table.get(fault.faultCode)
    if isinstance(outcome, bool):
        return outcome
    if outcome is None:
        about = f" for {program}" if program else ""
        raise SupervisorError(
            f"supervisord answered {method}{about} with fault {fault.faultCode}: "
            f"{fault.faultString}",
            program=program,
            fault=fault.faultCode,
        )
    raise ProgramFailed(
        program,
        f"{program} {outcome}: {fault.faultString}",
        state="UNKNOWN" if fault.faultCode == Fault.BAD_NAME else "FATAL",
        spawnerr=str(fault.faultString),
        retryable=fault.faultCode in _RETRYABLE_FAULTS,
        fault=fault.faultCode,
    )
