"""The private stack a bench runs: the real five and the sidecar under a supervisord
of its own (scripts/local_stack.py), and what the benches ask of it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from browser_stack.config import Settings
from browser_stack.core_types import Probe
from browser_stack.probes import build_probes
from browser_stack.stack import Program
from browser_stack.states import ALIVE_STATES
from browser_stack.supervisor import XmlRpcSupervisor
from scripts import local_stack

ENSURE = "/v1/browser-stack/ensure"
SETTLE_S = 0.5  # after a stop: let the kernel free the ports and the X lock
SIDECAR = "browser-stack"


@dataclass
class Bench:
    root: Path
    base: str
    settings: Settings
    supervisor: XmlRpcSupervisor
    http: aiohttp.ClientSession
    supervisord_pid: int

    @property
    def conf(self) -> Path:
        return self.root / "supervisord.conf"

    async def call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        async with self.http.request(
            method, self.base + path, json=body, timeout=aiohttp.ClientTimeout(total=120)
        ) as response:
            payload = await response.json()
            if response.status != 200:
                raise RuntimeError(f"{method} {path}: HTTP {response.status}: {payload}")
            return dict(payload)

    async def ensure(self, needs: list[str] | None = None) -> dict[str, Any]:
        answer = await self.call("POST", ENSURE, {"needs": needs} if needs else {})
        if not answer.get("ready"):
            raise RuntimeError(f"ensure not ready: {answer}")
        return answer

    async def stop_stack(self) -> None:
        """Stop the five (through the sidecar: not measured) and wait for STOPPED."""
        await self.call("POST", "/v1/browser-stack/stop")
        while True:
            infos = await self.supervisor.process_info()
            if all(info.state not in ALIVE_STATES for info in infos.values()):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(SETTLE_S)

    def fresh_probes(self) -> dict[Program, Probe]:
        return build_probes(self.settings, self.http)

    async def metrics(self) -> dict[str, float]:
        async with self.http.get(self.base + "/metrics") as response:
            text = await response.text()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def rpc(self, method: str, *args: Any) -> Any:
        """A call to supervisord about what the sidecar's adapter will not touch
        (the sidecar's own program), blocking: only between measurements."""
        return local_stack.rpc(self.root, method, *args)

    async def sidecar_pid(self) -> int:
        info = await asyncio.to_thread(self.rpc, "getProcessInfo", SIDECAR)
        return int(info["pid"])


@contextlib.asynccontextmanager
async def running_stack(listen: str) -> Any:
    root = Path(tempfile.mkdtemp(prefix="bs-bench-"))
    # The timeline reads the sidecar's structured log lines.
    os.environ.setdefault("BROWSER_STACK_LOG_FORMAT", "json")
    process = local_stack.start(root, listen=listen, env=local_stack.kept_up())
    base = f"http://{listen}"
    supervisor = XmlRpcSupervisor(f"unix://{root / 'supervisor.sock'}")
    try:
        await asyncio.to_thread(local_stack.wait_healthy, base, root, process.pid)
        env = {**os.environ, "SUPERVISOR_SERVER_URL": f"unix://{root / 'supervisor.sock'}"}
        settings = Settings.from_env(env)
        async with aiohttp.ClientSession() as http:
            yield Bench(root, base, settings, supervisor, http, process.pid)
    finally:
        await supervisor.close()
        killed = await asyncio.to_thread(local_stack.stop, root, process.pid)
        if killed:
            print("killed leftovers:\n  " + "\n  ".join(killed), file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
