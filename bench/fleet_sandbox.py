"""Many sandboxes on one machine: the namespaces, cgroups and processes behind bench/fleet.py.

A sandbox here is as close to its own container as this machine allows without a
container engine:

- its own network namespace (`ip netns add`) with only a loopback, so that every
  sandbox uses the AIO ports (9222, 8100, 5900, 6080) and the sidecar's 8110;
- its own mount namespace (`unshare --mount`) with a tmpfs on /tmp: X sockets and
  locks, Chromium's profile, HOME, supervisord's socket (a checkout or a Python
  that lives under the host's /tmp is bound back over it);
- its own PID namespace (`unshare --pid --fork`): supervisord is its PID 1, and
  when that dies the kernel ends everything else in the sandbox;
- its own memory cgroup where the machine allows one (`MemoryCgroups`).

Inside, a supervisord with the shipped supervisord.d/ files (the sidecar and the
five programs; tests pass a file of stand-ins instead) started through
bin/browser-stack-entrypoint, with DISABLE_BROWSER_STACK=true when lazy.

Nothing is left behind: `Fleet` is a context manager whose exit stops every
supervisord (then kills what outlived it), deletes the namespaces and the cgroups.
If the bench itself is killed, every sandbox's unshare gets SIGKILL from the
parent-death signal (setpriv), its supervisord then gets SIGKILL (`unshare
--kill-child`), and `cleanup_stale()`, run before every fleet, removes what a dead
run left: namespaces and cgroups carry the bench's pid in their names.

The bench reaches each sandbox's loopback through sockets created inside its
network namespace (`NetnsSockets`, setns(2) on the calling thread for the moment
of socket()), handed to aiohttp as its socket factory.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

# search_path, missing_executables: the same PATH as the e2e stack
from scripts import local_stack

REPO = Path(__file__).resolve().parent.parent

ENTRYPOINT = local_stack.ENTRYPOINT
SIDECAR_CONF = REPO / "supervisord.d" / "browser-stack.conf"
PROGRAMS_CONF = local_stack.PROGRAMS_CONF
NETNS_PREFIX = "bsfleet-"
CGROUP_PREFIX = "browser-stack-fleet-"
# Every process of a sandbox carries this in its environment, with the run's tag.
MARKER = "BROWSER_STACK_FLEET_RUN"
SIDECAR_PORT = 8110
# Inside each sandbox (its private /tmp): where the AIO image has /var/run/supervisor.sock.
SUPERVISOR_SOCK = "/tmp/supervisor.sock"
PROFILE_DIR = "/tmp/browser-stack/profile"
TMPFS_SIZE = "1g"
CLONE_NEWNET = 0x40000000
STOP_TIMEOUT_S = 40.0
# A cgroup v1 rmdir is refused (EBUSY) until the last task has left it.
RMDIR_TIMEOUT_S = 10.0
# Where the five write outside /tmp, HOME and the log dir: a container has its own
# copy of each. Xvnc compiles its keymap to /var/lib/xkb/server-<display>.xkm
# (xkbcomp unlinks it and writes it, Xvnc reads and unlinks it): shared, the
# sandboxes' Xvnc, all on display :99, race on it when they start together, and
# the loser exits with "XKB: Failed to compile keymap".
PRIVATE_DIRS = ("/var/lib/xkb",)


def outside_tmp(paths: Iterable[Path]) -> list[Path]:
    """Of the host directories a sandbox runs from (this checkout, the Pythons),
    those under /tmp, outermost only: the sandbox's own /tmp would hide them."""
    under = sorted({p.resolve() for p in paths if Path("/tmp") in p.resolve().parents})
    return [p for p in under if not any(q in p.parents for q in under)]


def sandbox_init(keep: Sequence[Path]) -> str:
    """The sandbox's PID 1, in its fresh mount namespace: a private /tmp and private
    copies of PRIVATE_DIRS, then the entrypoint. Each directory in `keep` (under the
    host's /tmp) is opened before the tmpfs hides it and bound back at its path."""
    if len(keep) > 6:  # sh's descriptors 3-9
        raise FleetError(f"too many directories under /tmp to keep: {keep}")
    opened = [(fd, shlex.quote(str(d))) for fd, d in enumerate(keep, start=3)]
    steps = [f"exec {fd}<{d}" for fd, d in opened]
    steps.append(f"mount -t tmpfs -o mode=1777,size={TMPFS_SIZE} tmpfs /tmp")
    for fd, d in opened:
        # --no-canonicalize: mount(8) would otherwise resolve the path, now hidden.
        steps += [f"mkdir -p {d}", f"mount --no-canonicalize --bind /proc/self/fd/{fd} {d}"]
        steps.append(f"exec {fd}<&-")
    steps += [f"{{ [ ! -d {d} ] || mount -t tmpfs tmpfs {d}; }}" for d in PRIVATE_DIRS]
    steps += ['mkdir -p "$HOME"', 'exec "$@"']
    return " && ".join(steps)


class FleetError(RuntimeError):
    pass


def tools_missing() -> str:
    """Why this machine cannot make sandboxes, or "" when it can."""
    if os.geteuid() != 0:
        return "the fleet needs root (ip netns, unshare, mount)"
    for tool in ("ip", "unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} not found on PATH (iproute2 and util-linux)"
    probe = subprocess.run(
        ["unshare", "--net", "--mount", "--pid", "--fork", "true"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if probe.returncode != 0:
        return f"cannot create namespaces here: unshare said {probe.stderr.strip()!r}"
    return ""


def missing_programs() -> list[str]:
    """The five programs' executables not found on the sandboxes' PATH."""
    return list(local_stack.missing_executables(local_stack.search_path()))


# -- network namespaces ----------------------------------------------------------------


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


@functools.cache
def _host_netns_fd() -> int:
    # Opened once, from a thread that never stays in another namespace.
    return os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)


def _setns(fd: int) -> None:
    if _libc().setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


class NetnsSockets:
    """Sockets that live in one network namespace, for clients in the bench."""

    def __init__(self, name: str) -> None:
        self._fd = os.open(f"/run/netns/{name}", os.O_RDONLY | os.O_CLOEXEC)

    def new_socket(self, family: int, kind: int, proto: int = 0) -> socket.socket:
        # A socket belongs for good to the namespace its creator was in at
        # socket(); only this thread switches, and only for that call.
        host = _host_netns_fd()
        _setns(self._fd)
        try:
            return socket.socket(family, kind, proto)
        finally:
            _setns(host)

    def factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's TCPConnector(socket_factory=...)."""
        family, kind, proto = addr_info[0], addr_info[1], addr_info[2]
        return self.new_socket(family, kind, proto)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def netns_names() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    return [line.split()[0] for line in out.stdout.splitlines() if line.strip()]


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if result.returncode != 0:
        raise FleetError(f"ip {' '.join(args)}: {result.stderr.strip()}")


# -- memory cgroups ------------------------------------------------------------------------


def _cgroup_paths(proc_self_cgroup: Path) -> dict[str, str]:
    """This process's cgroup per v1 controller, and "" for the v2 hierarchy."""
    paths: dict[str, str] = {}
    for line in proc_self_cgroup.read_text().splitlines():
        _id, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    return paths


def _read_stat(path: Path) -> dict[str, int]:
    stat = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(" ")
        with contextlib.suppress(ValueError):
            stat[key] = int(value)
    return stat


@dataclass
class MemoryCgroups:
    """One memory cgroup per sandbox, under a parent made for the run, below the
    bench's own cgroup (so whatever accounts for the bench still sees them).

    `kind` is "v2" (memory.current and memory.stat: what Kubernetes reads on a
    cgroup v2 node), "v1" (the memory controller's memory.usage_in_bytes and
    memory.stat: what the kubelet reads on a v1 node) or "" with `reason`.
    """

    kind: str
    parent: Path | None
    reason: str = ""
    children: list[Path] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        name: str,
        root: Path = Path("/sys/fs/cgroup"),
        proc_self_cgroup: Path = Path("/proc/self/cgroup"),
    ) -> MemoryCgroups:
        try:
            own = _cgroup_paths(proc_self_cgroup)
        except (OSError, ValueError) as exc:
            return cls("", None, f"cannot read {proc_self_cgroup}: {exc}")
        reasons = []
        v2_mounts = [
            mount
            for mount in (root, root / "unified")
            if "" in own
            and (mount / "cgroup.controllers").exists()
            and "memory" in (mount / "cgroup.controllers").read_text().split()
        ]
        for mount in v2_mounts:
            try:
                return cls._create_v2(mount / own[""].lstrip("/"), name)
            except OSError as exc:
                reasons.append(f"cgroup v2 at {mount}: {exc}")
        if not v2_mounts:
            reasons.append("no cgroup v2 hierarchy with the memory controller")
        if "memory" in own and (root / "memory" / "memory.usage_in_bytes").exists():
            parent = root / "memory" / own["memory"].lstrip("/") / name
            try:
                parent.mkdir()
            except OSError as exc:
                reasons.append(f"cgroup v1: cannot create {parent}: {exc}")
            else:
                # Why not v2, if that was tried: worth knowing next to the figures.
                return cls("v1", parent, "; ".join(reasons))
        else:
            reasons.append("no cgroup v1 memory controller")
        return cls("", None, "; ".join(reasons))

    @classmethod
    def _create_v2(cls, own: Path, name: str) -> MemoryCgroups:
        # Children get memory.current only when every ancestor delegates the
        # controller; the bench's own cgroup may refuse (it holds processes).
        if "memory" not in (own / "cgroup.subtree_control").read_text().split():
            (own / "cgroup.subtree_control").write_text("+memory")
        parent = own / name
        parent.mkdir()
        try:
            (parent / "cgroup.subtree_control").write_text("+memory")
        except OSError:
            parent.rmdir()
            raise
        return cls("v2", parent)

    def child(self, name: str) -> Path | None:
        if self.parent is None:
            return None
        path = self.parent / name
        path.mkdir()
        self.children.append(path)
        return path

    def read(self, path: Path) -> dict[str, int]:
        """Usage, working set (usage minus inactive file pages: `kubectl top`),
        anon, file and shmem, in bytes."""
        if self.kind == "v2":
            usage = int((path / "memory.current").read_text())
            stat = _read_stat(path / "memory.stat")
            anon, file, shmem = stat.get("anon", 0), stat.get("file", 0), stat.get("shmem", 0)
            inactive = stat.get("inactive_file", 0)
        else:
            usage = int((path / "memory.usage_in_bytes").read_text())
            stat = _read_stat(path / "memory.stat")
            anon, file, shmem = (stat.get(f"total_{k}", 0) for k in ("rss", "cache", "shmem"))
            inactive = stat.get("total_inactive_file", 0)
        return {
            "usage_bytes": usage,
            "working_set_bytes": max(0, usage - inactive),
            "anon_bytes": anon,
            "file_bytes": file,
            "shmem_bytes": shmem,
        }

    def remove(self) -> list[str]:
        """Remove the children and the parent; what could not be removed."""
        left = []
        for path in [*reversed(self.children), *([self.parent] if self.parent else [])]:
            if not _rmdir_when_empty(path):
                left.append(f"cgroup {path}")
        self.children.clear()
        return left


def _rmdir_when_empty(path: Path) -> bool:
    deadline = time.monotonic() + RMDIR_TIMEOUT_S
    while True:
        try:
            path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def cgroup_procs(path: Path) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    return []


# -- one sandbox ---------------------------------------------------------------------------


def write_supervisord_conf(directory: Path, programs_conf: Path) -> Path:
    """supervisord.conf for one sandbox: the shipped sidecar file and a programs file."""
    conf = directory / "supervisord.conf"
    conf.write_text(
        f"""\
; written by bench/fleet_sandbox.py
[unix_http_server]
file={SUPERVISOR_SOCK}
chmod=0700

[supervisord]
nodaemon=true
logfile={local_stack.ini(directory / "supervisord.log")}
pidfile=/tmp/supervisord.pid
childlogdir={local_stack.ini(directory / "log")}
loglevel=info

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix://{SUPERVISOR_SOCK}

[include]
files = {local_stack.ini(SIDECAR_CONF)} {local_stack.ini(programs_conf)}
""",
        encoding="utf-8",
    )
    return conf


@dataclass
class Sandbox:
    index: int
    netns: str
    directory: Path  # on the host: config and logs
    cgroup: Path | None
    sockets: NetnsSockets | None = None
    process: subprocess.Popen[bytes] | None = None
    # time.monotonic() when its supervisord was spawned.
    started_at: float = 0.0

    @property
    def log_dir(self) -> Path:
        return self.directory / "log"

    @property
    def supervisord_log(self) -> Path:
        return self.directory / "supervisord.log"

    @property
    def sidecar_log(self) -> Path:
        return self.log_dir / "browser-stack.err.log"

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def init_pid(self) -> int | None:
        """The sandbox's PID 1 (supervisord once the entrypoint has exec'd), as the
        host sees it: unshare's child."""
        if not self.running():
            return None
        assert self.process is not None
        with contextlib.suppress(psutil.Error):
            children = psutil.Process(self.process.pid).children()
            if children:
                return children[0].pid
        return None

    def pids(self) -> list[int]:
        """Every process of the sandbox: its cgroup's, or unshare's tree."""
        if self.cgroup is not None:
            return cgroup_procs(self.cgroup)
        if self.process is None:
            return []
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(self.process.pid)
            return [root.pid, *(p.pid for p in root.children(recursive=True))]
        return []

    def inside(self, path: str) -> Path:
        """A path in the sandbox's mount namespace, seen from the host."""
        pid = self.init_pid()
        if pid is None:
            raise FleetError(f"sandbox {self.index} is not running")
        return Path(f"/proc/{pid}/root") / path.lstrip("/")


def process_memory(pids: list[int]) -> dict[str, int]:
    """PSS and USS summed over the processes (smaps_rollup), and their count."""
    pss = uss = count = 0
    for pid in pids:
        with contextlib.suppress(psutil.Error):  # gone meanwhile
            info = psutil.Process(pid).memory_full_info()
            pss += getattr(info, "pss", 0)
            uss += info.uss
            count += 1
    return {"pss_bytes": pss, "uss_bytes": uss, "processes": count}


# -- the fleet -------------------------------------------------------------------------------


class Fleet:
    """N sandboxes: created on enter (nothing started), removed on exit.

    Call `start()` from a thread that outlives the sandboxes (the main thread):
    the parent-death signal follows the thread that spawned them.
    """

    def __init__(
        self,
        count: int,
        *,
        lazy: bool,
        workdir: Path,
        programs_conf: Path = PROGRAMS_CONF,
        env: Mapping[str, str] | None = None,
        tag: str | None = None,
        stop_timeout_s: float = STOP_TIMEOUT_S,
    ) -> None:
        if count < 1:
            raise ValueError("a fleet has at least one sandbox")
        workdir = workdir.resolve()
        if workdir == Path("/tmp") or Path("/tmp") in workdir.parents:
            # Each sandbox mounts its own /tmp over the host's: nothing there is
            # visible inside.
            raise FleetError(f"{workdir}: the work dir must be outside /tmp")
        self.count = count
        self.lazy = lazy
        self.workdir = workdir
        self.programs_conf = programs_conf.resolve()
        # What the sandboxes run from, where the host has it under /tmp (a checkout
        # there, as CI may make): bound back inside, over the sandbox's own /tmp.
        runs_from = [REPO, Path(sys.prefix), Path(sys.base_prefix), self.programs_conf.parent]
        runs_from += [Path(d) for d in local_stack.search_path().split(os.pathsep) if d]
        self.keep = outside_tmp(p for p in runs_from if p.is_dir())
        self.extra_env = dict(env or {})
        self.tag = tag or str(os.getpid())
        self.stop_timeout_s = stop_timeout_s
        self.sandboxes: list[Sandbox] = []
        self.cgroups = MemoryCgroups("", None, "not created yet")
        self.stale_removed: list[str] = []

    # -- life ------------------------------------------------------------------

    def __enter__(self) -> Fleet:
        try:
            self.open()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        left = self.close()
        if left:
            print("fleet: left behind after cleanup:\n  " + "\n  ".join(left), file=sys.stderr)

    def open(self) -> None:
        why = tools_missing()
        if why:
            raise FleetError(why)
        self.stale_removed = cleanup_stale()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cgroups = MemoryCgroups.create(f"{CGROUP_PREFIX}{self.tag}")
        for index in range(self.count):
            name = f"{NETNS_PREFIX}{self.tag}-{index}"
            directory = self.workdir / f"sandbox-{index}"
            shutil.rmtree(directory, ignore_errors=True)
            (directory / "log").mkdir(parents=True)
            sandbox = Sandbox(index, name, directory, self.cgroups.child(f"sandbox-{index}"))
            self.sandboxes.append(sandbox)
            _ip("netns", "add", name)
            _ip("-n", name, "link", "set", "lo", "up")
            sandbox.sockets = NetnsSockets(name)
            write_supervisord_conf(directory, self.programs_conf)

    def env(self, sandbox: Sandbox) -> dict[str, str]:
        """A container's environment, not the bench's: what the image would set."""
        env = {
            "PATH": local_stack.search_path(),
            "HOME": "/tmp/home",
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            MARKER: self.tag,
            "BROWSER_STACK_PROFILE_DIR": PROFILE_DIR,
            "BROWSER_STACK_LOG_DIR": str(sandbox.log_dir),
            "BROWSER_STACK_LOG_FORMAT": "json",
            "SUPERVISOR_SERVER_URL": f"unix://{SUPERVISOR_SOCK}",
        }
        if self.lazy:
            env["DISABLE_BROWSER_STACK"] = "true"
        env.update(self.extra_env)
        return env

    def command(self, sandbox: Sandbox) -> list[str]:
        conf = sandbox.directory / "supervisord.conf"
        join_cgroup = ["sh", "-c", 'exec "$@"', "sh"]
        if sandbox.cgroup is not None:
            # Joined before the first exec: everything the sandbox runs is charged there.
            join_cgroup = [
                "sh",
                "-c",
                'echo $$ > "$0" && exec "$@"',
                str(sandbox.cgroup / "cgroup.procs"),
            ]
        return [
            *join_cgroup,
            "setpriv", "--pdeathsig", "KILL",
            "ip", "netns", "exec", sandbox.netns,
            "unshare", "--mount", "--propagation", "private", "--pid", "--mount-proc",
            "--kill-child=SIGKILL", "--",
            "sh", "-c", sandbox_init(self.keep), "sandbox-init",
            str(ENTRYPOINT), sys.executable, "-m", "supervisor.supervisord", "-n", "-c", str(conf),
        ]  # fmt: skip

    def start(self, sandbox: Sandbox) -> None:
        """Spawn the sandbox's supervisord; don't wait."""
        with open(sandbox.directory / "sandbox.out", "ab") as out:
            sandbox.started_at = time.monotonic()
            sandbox.process = subprocess.Popen(
                self.command(sandbox),
                env=self.env(sandbox),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C reaches the bench alone, which cleans up
            )

    def start_all(self) -> None:
        for sandbox in self.sandboxes:
            self.start(sandbox)

    def close(self) -> list[str]:
        """Stop everything and remove what open() made; what is left (empty when clean)."""
        with _signals_deferred():
            self._stop_processes()
            for sandbox in self.sandboxes:
                if sandbox.sockets is not None:
                    sandbox.sockets.close()
            names = set(netns_names())
            for sandbox in self.sandboxes:
                if sandbox.netns in names:
                    with contextlib.suppress(FleetError):
                        _ip("netns", "del", sandbox.netns)
            self.cgroups.remove()
            return leftovers(self.tag)

    def _stop_processes(self) -> None:
        running = [s for s in self.sandboxes if s.running()]
        deadline = time.monotonic() + self.stop_timeout_s
        while any(s.running() for s in running) and time.monotonic() < deadline:
            for sandbox in running:
                pid = sandbox.init_pid()
                # SIGTERM to supervisord: it stops its programs, then exits, and
                # the kernel ends whatever is left in its PID namespace. A PID 1
                # ignores signals it has no handler for: the shells before
                # supervisord, and supervisord until it has set its handlers. So
                # again every second until it goes.
                target = pid if pid is not None else sandbox.process.pid  # type: ignore[union-attr]
                with contextlib.suppress(ProcessLookupError):
                    os.kill(target, signal.SIGTERM if pid is not None else signal.SIGKILL)
            until = min(deadline, time.monotonic() + 1.0)
            while any(s.running() for s in running) and time.monotonic() < until:
                time.sleep(0.1)
        for sandbox in running:
            if sandbox.running():
                pid = sandbox.init_pid()
                for target in (pid, sandbox.process.pid):  # type: ignore[union-attr]
                    if target is not None:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(target, signal.SIGKILL)
        for sandbox in running:
            assert sandbox.process is not None
            with contextlib.suppress(subprocess.TimeoutExpired):
                sandbox.process.wait(timeout=10)
        _kill_marked(self.tag)

    # -- measuring ------------------------------------------------------------

    def memory(self, sandbox: Sandbox) -> dict[str, Any]:
        """The sandbox's memory: PSS/USS summed over its processes, and its cgroup's."""
        sample: dict[str, Any] = process_memory(sandbox.pids())
        if sandbox.cgroup is not None:
            with contextlib.suppress(OSError):
                sample["cgroup"] = self.cgroups.read(sandbox.cgroup)
        return sample


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Cleanup runs to its end: Ctrl-C or SIGTERM meanwhile only says so."""

    def note(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        print(f"fleet: {name} during cleanup; finishing it first", file=sys.stderr)

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _marked(tag: str | None) -> list[psutil.Process]:
    """Live processes of a fleet run (any run when tag is None), not this one."""
    found = []
    for p in psutil.process_iter():
        try:
            if p.pid == os.getpid() or p.status() == psutil.STATUS_ZOMBIE:
                continue
            value = p.environ().get(MARKER)
            if value is not None and (tag is None or value == tag):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _kill_marked(tag: str | None) -> list[str]:
    killed = []
    for p in _marked(tag):
        with contextlib.suppress(psutil.Error):
            killed.append(f"process {p.pid} {' '.join(p.cmdline())[:100]}")
            p.kill()
    return killed


def _own_cgroup_parents() -> list[Path]:
    """Where MemoryCgroups.create puts a run's parent, for either hierarchy."""
    out = []
    with contextlib.suppress(OSError, ValueError):
        own = _cgroup_paths(Path("/proc/self/cgroup"))
        root = Path("/sys/fs/cgroup")
        if "memory" in own:
            out.append(root / "memory" / own["memory"].lstrip("/"))
        if "" in own:
            out += [root / own[""].lstrip("/"), root / "unified" / own[""].lstrip("/")]
    return [p for p in out if p.is_dir()]


def leftovers(tag: str) -> list[str]:
    """What a run with this tag still has on the machine: namespaces, processes,
    cgroups, mounts. Empty when it cleaned up."""
    left = [f"netns {n}" for n in netns_names() if n.startswith(f"{NETNS_PREFIX}{tag}-")]
    left += [f"process {p.pid} {p.name()}" for p in _marked(tag) if p.is_running()]
    for parent in _own_cgroup_parents():
        run = parent / f"{CGROUP_PREFIX}{tag}"
        if run.exists():
            left.append(f"cgroup {run}")
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        if f"/run/netns/{NETNS_PREFIX}{tag}-" in line:
            left.append(f"mount {line.split()[4]}")
    return left


def _run_alive(tag: str) -> bool:
    if not tag.isdigit():
        return True  # not a pid: not ours to judge
    try:
        return "fleet" in " ".join(psutil.Process(int(tag)).cmdline())
    except psutil.Error:
        return False


def cleanup_stale() -> list[str]:
    """Remove what fleet runs whose bench process is gone left behind."""
    removed = []
    for name in netns_names():
        if name.startswith(NETNS_PREFIX):
            tag = name[len(NETNS_PREFIX) :].rsplit("-", 1)[0]
            if not _run_alive(tag):
                removed += _kill_marked(tag)
                with contextlib.suppress(FleetError):
                    _ip("netns", "del", name)
                    removed.append(f"netns {name}")
    for parent in _own_cgroup_parents():
        for run in parent.glob(f"{CGROUP_PREFIX}*"):
            tag = run.name[len(CGROUP_PREFIX) :]
            if run.is_dir() and not _run_alive(tag):
                removed += _kill_marked(tag)
                children = [c for c in run.iterdir() if c.is_dir()]
                if all(_rmdir_when_empty(c) for c in children) and _rmdir_when_empty(run):
                    removed.append(f"cgroup {run}")
    return removed
