"""Many sandboxes as containers of the built image: bench/fleet.py's `--engine podman`.

The same interface as fleet_sandbox.Fleet, so bench/fleet.py runs the same phases on
it: N containers of an image built by scripts/build-image.sh, started at once with
`podman run -d` (the project's containers.conf; DISABLE_BROWSER_STACK=true for lazy,
nothing for eager), optionally under a memory limit. The bench reaches each
container's sidecar on its own loopback, through sockets made in the container's
network namespace, as the namespace engine does, and reads:

- memory from the container's own cgroup (what `podman stats`, `docker stats` and
  `kubectl top` read), and PSS and USS summed over its processes beside it;
- supervisord's log from the container's output (podman's k8s-file log) and the
  sidecar's from its log file inside the container.

Every container is named bstest-fleet-TAG-INDEX and labelled browser-stack-test=1;
all are removed on exit, Ctrl-C included (`scripts/containers.py sweep` removes what
a killed run left).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scripts import containers  # podman with the project's conf

from . import fleet_sandbox as fs

REPO = Path(__file__).resolve().parent.parent

SIDECAR_LOG = "/var/log/browser-stack/browser-stack.err.log"
CGROUP_ROOT = Path("/sys/fs/cgroup")


class ContainerSockets(fs.NetnsSockets):
    """Sockets in a container's network namespace: its init's, opened at first use
    (the bench makes its HTTP sessions before the containers run)."""

    def __init__(self, sandbox: ContainerSandbox) -> None:
        self._sandbox = sandbox
        self._fd = -1

    def new_socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        if self._fd < 0:
            if self._sandbox.pid is None:
                raise ConnectionRefusedError(f"{self._sandbox.name} is not running yet")
            self._fd = os.open(f"/proc/{self._sandbox.pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        return super().new_socket(family, kind, proto)

    def close(self) -> None:
        if self._fd >= 0:
            super().close()


@dataclass
class ContainerSandbox:
    index: int
    name: str
    directory: Path  # on the host: sandbox.out (the container's output) for messages
    sockets: ContainerSockets | None = None
    started_at: float = 0.0
    pid: int | None = None
    log_path: Path | None = None
    cgroup: Path | None = None

    @property
    def supervisord_log(self) -> Path:
        # supervisord logs to the container's output, which podman keeps in a file
        return self.log_path or self.directory / "sandbox.out"

    @property
    def sidecar_log(self) -> Path:
        return Path(f"/proc/{self.pid}/root") / SIDECAR_LOG.lstrip("/")

    def running(self) -> bool:
        return self.pid is not None and Path(f"/proc/{self.pid}").exists()

    def pids(self) -> list[int]:
        return fs.cgroup_procs(self.cgroup) if self.cgroup is not None else []


def host_memory_cgroups() -> tuple[str, None, str]:
    """(kind, no parent, why not): the memory controller podman puts containers under."""
    if (CGROUP_ROOT / "memory" / "memory.usage_in_bytes").exists():
        return "v1", None, ""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if controllers.exists() and "memory" in controllers.read_text().split():
        return "v2", None, ""
    return "", None, "no memory controller at /sys/fs/cgroup"


def memory_cgroup(pid: int) -> Path | None:
    """The memory cgroup a process is in, seen from the host (v1 or v2)."""
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return CGROUP_ROOT / "memory" / path.lstrip("/")
    for line in lines:
        _id, controllers, path = line.split(":", 2)
        if controllers == "" and (CGROUP_ROOT / path.lstrip("/") / "memory.current").exists():
            return CGROUP_ROOT / path.lstrip("/")
    return None


class ContainerFleet:
    """N containers of `image`: created on start_all(), removed on exit."""

    def __init__(
        self,
        count: int,
        *,
        lazy: bool,
        image: str,
        workdir: Path,
        env: Mapping[str, str] | None = None,
        memory_limit: str | None = None,
        tag: str | None = None,
    ) -> None:
        if count < 1:
            raise ValueError("a fleet has at least one sandbox")
        self.count = count
        self.lazy = lazy
        self.image = image
        self.workdir = workdir.resolve()
        self.extra_env = dict(env or {})
        self.memory_limit = memory_limit
        self.tag = tag or str(os.getpid())
        self.cgroups = fs.MemoryCgroups("", None, "no container started yet")
        self.stale_removed: list[str] = []
        self.sandboxes = [
            ContainerSandbox(i, f"{containers.PREFIX}fleet-{self.tag}-{i}", self.workdir / f"c{i}")
            for i in range(count)
        ]

    def __enter__(self) -> ContainerFleet:
        why = containers.unusable()
        if why:
            raise fs.FleetError(why)
        if containers.podman("image", "exists", self.image, check=False).returncode != 0:
            raise fs.FleetError(f"no image {self.image} (scripts/build-image.sh builds one)")
        self.stale_removed = containers.sweep()
        self.cgroups = fs.MemoryCgroups(*host_memory_cgroups())
        for sandbox in self.sandboxes:
            sandbox.directory.mkdir(parents=True, exist_ok=True)
            sandbox.sockets = ContainerSockets(sandbox)
        return self

    def __exit__(self, *exc: object) -> None:
        left = self.close()
        if left:
            print("fleet: left behind after cleanup:\n  " + "\n  ".join(left), file=sys.stderr)

    def env(self) -> dict[str, str]:
        env = {"BROWSER_STACK_LOG_FORMAT": "json"}
        if self.lazy:
            env["DISABLE_BROWSER_STACK"] = "true"
        env.update(self.extra_env)
        return env

    def _run(self, sandbox: ContainerSandbox) -> None:
        argv = ["run", "-d", "--name", sandbox.name, "--label", containers.LABEL]
        argv += ["--log-driver", "k8s-file", "--network", "none"]
        if self.memory_limit:
            argv += ["--memory", self.memory_limit]
        for key, value in self.env().items():
            argv += ["-e", f"{key}={value}"]
        sandbox.started_at = time.monotonic()
        containers.podman(*argv, self.image)
        [info] = containers.podman_json("inspect", sandbox.name)
        sandbox.pid = int(info["State"]["Pid"])
        sandbox.log_path = Path(info["HostConfig"]["LogConfig"]["Path"])
        with contextlib.suppress(OSError):
            (sandbox.directory / "sandbox.out").unlink()
        (sandbox.directory / "sandbox.out").symlink_to(sandbox.log_path)
        sandbox.cgroup = memory_cgroup(sandbox.pid)

    def start_all(self) -> None:
        """`podman run -d` for all N at once (each one's boot is timed from its own run)."""
        with ThreadPoolExecutor(max_workers=self.count) as pool:
            list(pool.map(self._run, self.sandboxes))

    def memory(self, sandbox: ContainerSandbox) -> dict[str, Any]:
        sample: dict[str, Any] = fs.process_memory(sandbox.pids())
        if sandbox.cgroup is not None:
            with contextlib.suppress(OSError):
                sample["cgroup"] = self.cgroups.read(sandbox.cgroup)
        return sample

    def close(self) -> list[str]:
        for sandbox in self.sandboxes:
            if sandbox.sockets is not None:
                sandbox.sockets.close()
        with ThreadPoolExecutor(max_workers=self.count) as pool:
            list(pool.map(lambda s: containers.remove(s.name), self.sandboxes))
        return self.leftovers()

    def leftovers(self) -> list[str]:
        names = containers.podman("ps", "-a", "--format", "{{.Names}}", check=False).stdout
        mine = f"{containers.PREFIX}fleet-{self.tag}-"
        return [f"container {n}" for n in names.split() if n.startswith(mine)]
