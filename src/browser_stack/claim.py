"""One sidecar controls a supervisord's stack; any other on it only reads.

Two sidecars on one supervisord each start and stop the five on their own view
of who uses them: with idle stop on, each stops what the other's callers use.
So a sidecar claims the stack as it starts and before it acts. One that finds
the claim held says so in one line and only reads (status, metrics, memory,
the doctor): its ensure, gate, lease and stop answer 409 `not_in_control`
naming the holder, and its idle monitor stops nothing. It tries again each
time it would act, so it takes over once the holder is gone.

The claim is an abstract unix socket, a name in the network namespace with no
file behind it, derived from supervisord's address. Nothing is written next to
supervisord's socket, whose directory may be read-only for the sidecar or
shared by other supervisords, and nothing outlives the holder: the kernel
drops the name with its last descriptor, however the process ends. Its scope
is a network namespace (a container, a Kubernetes pod): the sidecars that can
meet there. For a unix socket the name holds the socket's path and the device
of its directory, so two containers of one pod with a supervisord each at the
same path do not take each other's claim. The holder answers a connection with
where it listens; the kernel says its pid (as seen from the asker's namespace,
0 when it cannot be seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import socket
import struct

from browser_stack.errors import NotInControl

log = logging.getLogger(__name__)

# Linux's limit for a unix socket name is 107 bytes; longer keys are hashed.
_MAX_NAME = 100
_ASK_TIMEOUT_S = 1.0


def claim_name(supervisor_url: str) -> str:
    """The abstract socket name (without its leading NUL) for supervisord at `supervisor_url`."""
    if supervisor_url.startswith("unix://"):
        path = os.path.realpath(supervisor_url.removeprefix("unix://"))
        try:
            device = os.stat(os.path.dirname(path)).st_dev
        except OSError:
            device = 0
        key = f"{path} dev {device}"
    else:
        key = supervisor_url.lower()
    name = f"browser-stack claim {key}"
    if len(name.encode()) > _MAX_NAME:
        name = "browser-stack claim " + hashlib.sha256(key.encode()).hexdigest()
    return name


class Claim:
    def __init__(self, supervisor_url: str, listen: str) -> None:
        self._url = supervisor_url
        self._address = "\0" + claim_name(supervisor_url)
        self._card = (json.dumps({"pid": os.getpid(), "listen": listen}) + "\n").encode()
        self._sock: socket.socket | None = None

    def held(self) -> bool:
        """Whether this sidecar controls the stack: it holds the claim, or took
        it now (it was free). Needs the running event loop."""
        if self._sock is not None:
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind(self._address)
            sock.listen(16)
        except OSError:
            sock.close()
            return False
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._answer)
        return True

    async def check(self) -> None:
        """Return when this sidecar controls the stack; else raise NotInControl
        naming the sidecar that does."""
        if self.held():
            return
        pid, listen = await self.holder()
        if self.held():  # the holder went away while it was asked
            return
        who = f"pid {pid}" if pid else "its pid not visible from here"
        where = f", listening on {listen}" if listen else ""
        raise NotInControl(
            f"another sidecar ({who}{where}) controls the browser stack on {self._url}; "
            "ask that one (this one only reads)",
            supervisor_url=self._url,
            holder_pid=pid,
            holder_listen=listen,
        )

    async def holder(self) -> tuple[int, str]:
        """The pid and listen address of the sidecar holding the claim, as far
        as they can be told: (0, "") when it does not answer."""
        loop = asyncio.get_running_loop()
        pid, listen = 0, ""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setblocking(False)
            with contextlib.suppress(OSError, TimeoutError, ValueError):
                async with asyncio.timeout(_ASK_TIMEOUT_S):
                    await loop.sock_connect(sock, self._address)
                    credentials = sock.getsockopt(
                        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")
                    )
                    pid = struct.unpack("3i", credentials)[0]
                    card = json.loads(await loop.sock_recv(sock, 4096))
                    listen = str(card.get("listen", ""))
        return pid, listen

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    def _answer(self) -> None:
        """Tell whoever connects where this sidecar listens."""
        assert self._sock is not None
        try:
            conn, _ = self._sock.accept()
        except OSError:
            return
        with conn, contextlib.suppress(OSError):
            conn.send(self._card)
