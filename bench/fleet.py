"""Many sandboxes on one machine, eager against lazy: capacity, boot, first browser use, release.

    .venv/bin/python -m bench.fleet --sandboxes 10 --concurrent 1,10 --mode both \\
        [--json bench/out/fleet.json] [--plot bench/out/fleet.png]
    .venv/bin/python -m bench.fleet --engine podman --image TAG [--memory-limit 1536m] ...

Two engines. netns (the default): each sandbox a supervisord of the host's programs in
namespaces of its own, as below. podman: each sandbox a container of an image built by
scripts/build-image.sh (bench/fleet_podman.py), its memory from the container's cgroup.

N sandboxes (bench/fleet_sandbox.py: each its own network, mount and PID namespace,
private /tmp, memory cgroup where the machine has one), each a supervisord with
supervisord.d/ (the sidecar and the five programs) started through
bin/browser-stack-entrypoint, with DISABLE_BROWSER_STACK=true (lazy) or without
(eager). Per mode:

  boot      all N supervisords spawned at once; time to ready: eager, the sidecar's
            passive status says all five pass their probes; lazy, the sidecar's
            GET /readyz answers 200 (or, where it has no /readyz, GET /healthz with
            supervisord reachable)
  capacity  after --settle s: memory per sandbox, PSS summed over its processes and
            its cgroup's usage and working set; the machine's MemAvailable before
            the boot and now
  first use (lazy) K sandboxes POST /ensure {"needs": ["cdp"]} at the same moment, for
            each K of --concurrent, --rounds times, every stack stopped before each
            round; the sidecar's elapsed_ms, and errors: any non-200 (a 504 at the
            ensure's own deadline counted apart), a client timeout, a program spawned
            twice (a restart), a start that failed or did not end; and the CPU time
            the K sandboxes used until the last answer and until every start ended,
            divided by the cores: the shortest makespan the machine allows
  --start   (lazy) BROWSER_STACK_START for the sidecars: each value its own lazy
            phase and boot ("lazy-all", "lazy-needed"), in the order given
  release   (lazy) the last round's browsers left alone until the sidecar's idle stop
            (--idle-timeout) stops them; memory again

Prints tables in the shape of DeerFlow's sandbox profiling guide (Capacity, Startup),
writes JSON with the raw samples and a PNG. Not a test: nothing is asserted. Root only.
Every namespace, cgroup, mount and process is removed on any exit, Ctrl-C included;
`--cleanup` removes what a killed run left.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from . import fleet_sandbox as fs
from .idle_stop import mem_available_mib
from .noise import Noise, timed
from .report import machine, table
from .timeline import no_plot_here

REPO = Path(__file__).resolve().parent.parent

MIB = 1024 * 1024
PREFIX = "/v1/browser-stack"
MODES = ("lazy", "eager")
ALIVE = {"STARTING", "RUNNING", "BACKOFF", "STOPPING"}
POLL_S = {"lazy": 0.1, "eager": 0.25}
# The sidecar answers an ensure by its own deadline (30 s by default); a client
# that waits longer sees the sidecar's 504 rather than its own timeout.
ENSURE_CLIENT_TIMEOUT_S = 90.0
RELEASE_EXTRA_S = 120.0
SPAWNED = re.compile(r"spawned: '([^']+)'")
GAVE_UP = re.compile(r"gave up: (\S+) entered FATAL")
EXITED_UNEXPECTED = re.compile(r"exited: (\S+) \(exit status (\d+); not expected\)")


@dataclass
class Options:
    sandboxes: int
    concurrent: list[int]
    modes: list[str]
    rounds: int
    settle_s: float
    idle_timeout_s: float
    boot_timeout_s: float
    round_timeout_s: float
    pause_s: float
    workdir: Path
    programs_conf: Path
    sidecar_env: dict[str, str] = field(default_factory=dict)
    engine: str = "netns"
    image: str = ""
    memory_limit: str | None = None
    # BROWSER_STACK_START values, one lazy phase each; empty: the sidecar's default.
    starts: list[str] = field(default_factory=list)


def mib(value: float) -> float:
    return round(value / MIB, 1)


def spread(values: list[float], digits: int = 1) -> dict[str, Any]:
    if not values:
        return {"count": 0}
    return {
        "count": len(values),
        "p50": round(statistics.median(values), digits),
        "avg": round(statistics.fmean(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
        "total": round(sum(values), digits),
        "samples": [round(v, digits) for v in values],
    }


# -- talking to a sandbox's sidecar ---------------------------------------------------------


def session_for(sandbox: fs.Sandbox) -> aiohttp.ClientSession:
    """HTTP to 127.0.0.1:8110 inside the sandbox's network namespace."""
    assert sandbox.sockets is not None
    connector = aiohttp.TCPConnector(socket_factory=sandbox.sockets.factory, force_close=True)
    return aiohttp.ClientSession(f"http://127.0.0.1:{fs.SIDECAR_PORT}", connector=connector)


async def call(
    http: aiohttp.ClientSession, method: str, path: str, body: Any = None, seconds: float = 10.0
) -> tuple[int, Any]:
    async with http.request(
        method, path, json=body, timeout=aiohttp.ClientTimeout(total=seconds)
    ) as response:
        try:
            payload = await response.json(content_type=None)
        except ValueError:
            payload = None
        return response.status, payload


async def sidecar_ready(http: aiohttp.ClientSession) -> tuple[bool, str, str]:
    """(ready, why not, endpoint): /readyz where the sidecar has it, else /healthz."""
    status, payload = await call(http, "GET", "/readyz")
    if status != 404:
        return status == 200, f"/readyz {status}: {payload}", "/readyz"
    status, payload = await call(http, "GET", "/healthz")
    reachable = isinstance(payload, dict) and payload.get("supervisor", {}).get("reachable")
    return status == 200 and bool(reachable), f"/healthz {status}: {payload}", "/healthz"


async def stack_ready(http: aiohttp.ClientSession) -> tuple[bool, str, bool]:
    """(all five ready, why not, hopeless): the sidecar's passive status."""
    status, payload = await call(http, "GET", f"{PREFIX}/status")
    if status != 200 or not isinstance(payload, dict):
        return False, f"status {status}", False
    programs = payload["programs"]
    pending = {p: s for p, s in programs.items() if not s["ready"]}
    fatal = {p: s for p, s in pending.items() if s["state"] == "FATAL"}
    why = ", ".join(f"{p} {s['state']} {s.get('reason', '')}" for p, s in pending.items())
    return not pending, why, bool(fatal)


# -- logs: what a start did that its answer does not say --------------------------------------


def read_from(path: Path, offset: int) -> str:
    with contextlib.suppress(OSError), open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode("utf-8", "replace")
    return ""


def size(path: Path) -> int:
    with contextlib.suppress(OSError):
        return path.stat().st_size
    return 0


def sidecar_messages(text: str) -> list[str]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                out.append(str(record.get("message", "")))
    return out


@dataclass
class LogMarks:
    supervisord: int
    sidecar: int

    @classmethod
    def now(cls, sandbox: fs.Sandbox) -> LogMarks:
        return cls(size(sandbox.supervisord_log), size(sandbox.sidecar_log))


def start_events(sandbox: fs.Sandbox, marks: LogMarks) -> dict[str, Any]:
    """What supervisord and the sidecar logged since `marks`."""
    supervisord = read_from(sandbox.supervisord_log, marks.supervisord)
    spawned = Counter(SPAWNED.findall(supervisord))
    messages = sidecar_messages(read_from(sandbox.sidecar_log, marks.sidecar))
    return {
        "spawned": dict(spawned),
        "respawns": sum(n - 1 for n in spawned.values() if n > 1),
        "fatal": GAVE_UP.findall(supervisord),
        "unexpected_exits": [f"{p} ({code})" for p, code in EXITED_UNEXPECTED.findall(supervisord)],
        "sidecar_restarts": [m for m in messages if m.startswith("restarting program=")],
        "start_failed": [m for m in messages if m.startswith("start failed")],
        "start_ends": [m for m in messages if m.startswith("start ends in")],
    }


# -- the K starts against the machine's CPU ---------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def processes_cpu_s(pids: list[int]) -> float:
    """CPU seconds the processes have used, their reaped children's included
    (utime, stime, cutime, cstime of /proc/<pid>/stat): a process that has
    exited counts through the parent that reaped it (supervisord for a program,
    Chromium for its helpers)."""
    ticks = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError):  # gone meanwhile
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(f) for f in fields[11:15])
    return ticks / CLOCK_TICKS


def machine_busy_s() -> float:
    """CPU seconds every core of the machine has spent not idle since boot."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / CLOCK_TICKS  # less idle and iowait


def cores() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class CpuMark:
    """The CPU the chosen sandboxes had used, and the machine's busy time, at one moment."""

    at: float
    sandboxes_s: float
    machine_s: float

    @classmethod
    def now(cls, sandboxes: list[fs.Sandbox]) -> CpuMark:
        pids = [pid for s in sandboxes for pid in s.pids()]
        return cls(time.monotonic(), processes_cpu_s(pids), machine_busy_s())


def cpu_round(
    before: CpuMark, answered: CpuMark, ended: CpuMark, began: float, noise: Noise
) -> dict[str, Any]:
    """One round: the CPU the K sandboxes used until the last answer and until
    every start ended, and the bound it sets: CPU seconds / cores, the shortest
    makespan the machine allows for that work, next to the makespan seen."""

    def span(until: CpuMark) -> dict[str, Any]:
        used = until.sandboxes_s - before.sandboxes_s
        busy = until.machine_s - before.machine_s
        return {
            "cpu_s": round(used, 2),
            "bound_s": round(used / cores(), 2),
            "makespan_s": round(until.at - began, 2),
            # The sandboxes' share of the machine's busy time: the rest is other work.
            "share_of_machine": round(used / busy, 3) if busy > 0 else None,
        }

    return {
        "answers": span(answered),
        "stack": span(ended),
        "foreign": noise.summary(began, ended.at),
    }


def cpu_summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """The rounds' CPU figures, and their medians."""
    out: dict[str, Any] = {"cores": cores(), "rounds": rounds}
    for part in ("answers", "stack"):
        out[part] = {
            key: round(statistics.median(r[part][key] for r in rounds), 2)
            for key in ("cpu_s", "bound_s", "makespan_s")
        }
    return out


# -- phases ---------------------------------------------------------------------------------


async def wait_booted(
    sandbox: fs.Sandbox, http: aiohttp.ClientSession, lazy: bool, timeout_s: float
) -> dict[str, Any]:
    last = "no answer"
    endpoint = ""
    while True:
        if not sandbox.running():
            tail = read_from(sandbox.directory / "sandbox.out", 0)[-2000:]
            return {"ready_s": None, "failure": f"its supervisord exited: {tail}"}
        if time.monotonic() - sandbox.started_at > timeout_s:
            return {"ready_s": None, "failure": f"not ready after {timeout_s:g} s: {last}"}
        try:
            if lazy:
                ready, last, endpoint = await sidecar_ready(http)
            else:
                ready, last, hopeless = await stack_ready(http)
                endpoint = f"{PREFIX}/status"
                if hopeless:
                    return {"ready_s": None, "failure": f"a program went FATAL: {last}"}
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            ready, last = False, repr(exc)
        if ready:
            return {
                "ready_s": round(time.monotonic() - sandbox.started_at, 3),
                "endpoint": endpoint,
            }
        await asyncio.sleep(POLL_S["lazy" if lazy else "eager"])


async def stop_stacks(sessions: dict[int, aiohttp.ClientSession]) -> None:
    """Stop the five everywhere (POST /stop waits for supervisord's stops)."""
    await asyncio.gather(
        *(call(http, "POST", f"{PREFIX}/stop", seconds=120) for http in sessions.values())
    )


async def ensure_cdp(http: aiohttp.ClientSession) -> dict[str, Any]:
    began = time.monotonic()
    try:
        status, payload = await call(
            http, "POST", f"{PREFIX}/ensure", {"needs": ["cdp"]}, seconds=ENSURE_CLIENT_TIMEOUT_S
        )
    except TimeoutError:
        return {"status": None, "error": "client timeout", "client_s": ENSURE_CLIENT_TIMEOUT_S}
    except (aiohttp.ClientError, OSError) as exc:
        return {"status": None, "error": repr(exc), "client_s": time.monotonic() - began}
    out: dict[str, Any] = {"status": status, "client_s": round(time.monotonic() - began, 3)}
    if status == 200 and isinstance(payload, dict):
        out["elapsed_s"] = round(payload["elapsed_ms"] / 1000, 3)
        out["cold"] = payload.get("cold")
    else:
        out["error"] = payload.get("error") if isinstance(payload, dict) else str(payload)
        out["message"] = payload.get("message") if isinstance(payload, dict) else ""
        if isinstance(payload, dict) and "timeout_s" in payload:
            out["timeout_s"] = payload["timeout_s"]  # a 504's deadline
    return out


async def wait_start_end(
    sandbox: fs.Sandbox, marks: LogMarks, began: float, timeout_s: float
) -> float | None:
    """Seconds from `began` until the sidecar logged the end of the start (all
    five, the rest of the stack included), or None."""
    while time.monotonic() - began < timeout_s:
        messages = sidecar_messages(read_from(sandbox.sidecar_log, marks.sidecar))
        if any(m.startswith("start ends in") for m in messages):
            return round(time.monotonic() - began, 2)
        await asyncio.sleep(0.25)
    return None


def judge(
    answer: dict[str, Any], events: dict[str, Any], ended_s: float | None
) -> list[tuple[str, str]]:
    """What went wrong for one sandbox in one round, as (kind, what); empty: nothing."""
    problems = []
    status = answer.get("status")
    if status != 200:
        kind = "timeout" if status is None or status == 504 else f"HTTP {status}"
        if status == 504 and answer["client_s"] >= answer.get("timeout_s", float("inf")):
            kind = "504 at its deadline"  # what the deadline promises: not a failure
        problems.append((kind, f"HTTP {status} {answer.get('error')}: {answer.get('message', '')}"))
    if events["respawns"]:
        problems.append(("restart", f"spawned more than once: {events['spawned']}"))
    problems += [("restart", f"sidecar {m}") for m in events["sidecar_restarts"]]
    problems += [("failed", f"sidecar {m}") for m in events["start_failed"]]
    problems += [("failed", f"supervisord: {p} gave up (FATAL)") for p in events["fatal"]]
    if ended_s is None:
        problems.append(("timeout", "the start did not end in time"))
    else:
        problems += [("failed", m) for m in events["start_ends"] if "failed" in m]
    return problems


async def first_use(
    fleet: fs.Fleet,
    sessions: dict[int, aiohttp.ClientSession],
    ks: list[int],
    opts: Options,
    noise: Noise,
) -> tuple[dict[str, Any], list[int]]:
    """K sandboxes ensure the browser at once, for each K; the last round's sandboxes."""
    out: dict[str, Any] = {}
    booted = [s for s in fleet.sandboxes if s.index in sessions]
    chosen: list[fs.Sandbox] = []
    for k in ks:
        answers: list[dict[str, Any]] = []
        problems: list[str] = []
        kinds: Counter[str] = Counter()
        ended: list[float] = []
        cpu_rounds: list[dict[str, Any]] = []
        available: list[float] = []
        for round_no in range(opts.rounds):
            await stop_stacks(sessions)
            await asyncio.sleep(opts.pause_s)
            chosen = [booted[(round_no * k + j) % len(booted)] for j in range(k)]
            marks = {s.index: LogMarks.now(s) for s in chosen}
            cpu_before = CpuMark.now(chosen)
            began = time.monotonic()
            round_answers = await asyncio.gather(*(ensure_cdp(sessions[s.index]) for s in chosen))
            cpu_answered = CpuMark.now(chosen)
            ends = await asyncio.gather(
                *(wait_start_end(s, marks[s.index], began, opts.round_timeout_s) for s in chosen)
            )
            cpu_rounds.append(
                cpu_round(cpu_before, cpu_answered, CpuMark.now(chosen), began, noise)
            )
            # With every start ended: what K stacks up (and N - K idle) leave the machine.
            available.append(mem_available_mib())
            for sandbox, answer, end in zip(chosen, round_answers, ends, strict=True):
                events = start_events(sandbox, marks[sandbox.index])
                answer |= {
                    "sandbox": sandbox.index,
                    "round": round_no,
                    "stack_all_s": end,
                    "events": events,
                }
                answer["problems"] = judge(answer, events, end)
                answers.append(answer)
                problems += [
                    f"round {round_no} sandbox {sandbox.index}: {what}"
                    for _kind, what in answer["problems"]
                ]
                kinds.update({kind for kind, _what in answer["problems"]})
                if end is not None:
                    ended.append(end)
            ok = [a["elapsed_s"] for a in round_answers if "elapsed_s" in a]
            cpu = cpu_rounds[-1]
            print(
                f"  K={k} round {round_no + 1}/{opts.rounds}: "
                f"{len(ok)}/{k} answered 200, elapsed p50 "
                f"{statistics.median(ok) if ok else float('nan'):.2f} s, max "
                f"{max(ok) if ok else float('nan'):.2f} s; CPU bound to the last answer "
                f"{cpu['answers']['bound_s']:.2f} s, to every start's end "
                f"{cpu['stack']['bound_s']:.2f} s; MemAvailable then {available[-1]:.0f} MiB",
                flush=True,
            )
        elapsed = [a["elapsed_s"] for a in answers if "elapsed_s" in a]
        out[str(k)] = {
            **spread(elapsed, 3),
            # Sandbox-rounds with anything wrong; error_kinds counts them by kind.
            "errors": sum(1 for a in answers if a["problems"]),
            "error_kinds": dict(kinds),
            "error_details": problems,
            "client_s": spread([a["client_s"] for a in answers], 3),
            "stack_all_s": spread(ended, 2),
            "cpu": cpu_summary(cpu_rounds),
            "mem_available_mib_after": available,
            "answers": answers,
        }
    return out, [s.index for s in chosen]


async def release(
    fleet: fs.Fleet, sessions: dict[int, aiohttp.ClientSession], used: list[int], opts: Options
) -> dict[str, Any]:
    """Leave the used stacks alone until the idle stop has stopped them all."""
    began = time.monotonic()
    deadline = began + opts.idle_timeout_s + RELEASE_EXTRA_S
    pending = set(used)
    stops: dict[int, int] = {}
    while pending and time.monotonic() < deadline:
        for index in sorted(pending):
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                status, payload = await call(sessions[index], "GET", f"{PREFIX}/status")
                if status != 200:
                    continue
                alive = [p for p, s in payload["programs"].items() if s["state"] in ALIVE]
                stops[index] = payload["idle"]["idle_stops"]
                if not alive and stops[index] > 0:
                    pending.discard(index)
        await asyncio.sleep(1.0)
    waited = round(time.monotonic() - began, 1)
    await asyncio.sleep(2.0)  # the kernel frees the pages of exited processes
    samples = await asyncio.to_thread(lambda: [fleet.memory(s) for s in fleet.sandboxes])
    return {
        "waited_s": waited,
        "not_stopped": sorted(pending),
        "idle_stops": stops,
        "used": used,
        "memory": memory_summary(samples, fleet.cgroups.kind),
        "memory_used_sandboxes": memory_summary([samples[i] for i in used], fleet.cgroups.kind),
    }


def memory_summary(samples: list[dict[str, Any]], cgroup_kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "pss": spread([mib(s["pss_bytes"]) for s in samples]),
        "uss": spread([mib(s["uss_bytes"]) for s in samples]),
        "processes": [s["processes"] for s in samples],
    }
    if cgroup_kind and all("cgroup" in s for s in samples):
        for key in ("usage", "working_set", "anon", "file", "shmem"):
            out[f"cgroup_{key}"] = spread([mib(s["cgroup"][f"{key}_bytes"]) for s in samples])
    return out


async def measure(
    fleet: fs.Fleet, opts: Options, noise: Noise, mode: str
) -> dict[str, Any]:
    sessions = {s.index: session_for(s) for s in fleet.sandboxes}
    result: dict[str, Any] = {"sandboxes": fleet.count, "memory_cgroup": fleet.cgroups.kind}
    phases: dict[str, Any] = {}
    try:
        available_before = mem_available_mib()
        with timed(noise, phases, "boot"):
            fleet.start_all()
            boots = await asyncio.gather(
                *(
                    wait_booted(s, sessions[s.index], fleet.lazy, opts.boot_timeout_s)
                    for s in fleet.sandboxes
                )
            )
        ready = [b["ready_s"] for b in boots if b["ready_s"] is not None]
        failures = {i: b["failure"] for i, b in enumerate(boots) if b["ready_s"] is None}
        boot_events = {s.index: start_events(s, LogMarks(0, 0)) for s in fleet.sandboxes}
        result["boot_ready_s"] = {
            **spread(ready, 3),
            "endpoints": sorted({b["endpoint"] for b in boots if b.get("endpoint")}),
            "failures": failures,
            "respawns": {i: e["spawned"] for i, e in boot_events.items() if e["respawns"]},
        }
        print(
            f"{mode}: booted {len(ready)}/{fleet.count} at once, ready p50 "
            f"{statistics.median(ready) if ready else float('nan'):.2f} s, max "
            f"{max(ready) if ready else float('nan'):.2f} s",
            flush=True,
        )
        for index, why in failures.items():
            print(f"  sandbox {index} did not boot: {why[:300]}", flush=True)
        await asyncio.sleep(opts.settle_s)
        samples = await asyncio.to_thread(lambda: [fleet.memory(s) for s in fleet.sandboxes])
        available_after = mem_available_mib()
        result["idle_mib_per_sandbox"] = memory_summary(samples, fleet.cgroups.kind)
        result["mem_available_mib"] = {
            "before": available_before,
            "after": available_after,
            "drop": round(available_before - available_after, 1),
            "drop_per_sandbox": round((available_before - available_after) / fleet.count, 1),
        }
        pss = result["idle_mib_per_sandbox"]["pss"]
        print(
            f"{mode}: idle PSS per sandbox avg {pss['avg']} MiB, max {pss['max']} MiB", flush=True
        )
        if fleet.lazy:
            usable = {i: h for i, h in sessions.items() if i not in failures}
            ks = sorted({min(k, len(usable)) for k in opts.concurrent if k >= 1})
            with timed(noise, phases, "first_use"):
                result["browser_ready_s"], used = await first_use(fleet, usable, ks, opts, noise)
            print(f"{mode}: waiting for the idle stop of sandboxes {used}", flush=True)
            with timed(noise, phases, "release"):
                result["release"] = await release(fleet, usable, used, opts)
        result["phases"] = phases
        return result
    finally:
        for http in sessions.values():
            await http.close()


def make_fleet(opts: Options, mode: str, name: str, env: dict[str, str]) -> Any:
    if opts.engine == "podman":
        from . import fleet_podman

        return fleet_podman.ContainerFleet(
            opts.sandboxes,
            lazy=mode == "lazy",
            image=opts.image,
            workdir=opts.workdir / name,
            env=env,
            memory_limit=opts.memory_limit,
        )
    return fs.Fleet(
        opts.sandboxes,
        lazy=mode == "lazy",
        workdir=opts.workdir / name,
        programs_conf=opts.programs_conf,
        env=env,
    )


def phases(opts: Options) -> list[tuple[str, str, str | None]]:
    """(name, mode, BROWSER_STACK_START) of each phase: eager once, lazy once
    per --start value ("lazy-all", "lazy-needed"), or once as "lazy"."""
    out: list[tuple[str, str, str | None]] = []
    for mode in opts.modes:
        if mode == "lazy" and opts.starts:
            out += [(f"lazy-{start}", mode, start) for start in opts.starts]
        else:
            out.append((mode, mode, None))
    return out


def lazy_phases(modes: dict[str, Any]) -> dict[str, Any]:
    return {name: r for name, r in modes.items() if name.startswith("lazy")}


def run_mode(opts: Options, mode: str, name: str = "", start: str | None = None) -> dict[str, Any]:
    name = name or mode
    env = dict(opts.sidecar_env)
    if mode == "lazy":
        env.setdefault("BROWSER_STACK_IDLE_TIMEOUT", f"{opts.idle_timeout_s:g}")
        env.setdefault("BROWSER_STACK_IDLE_MIN_UPTIME", "0")
    if start is not None:
        env["BROWSER_STACK_START"] = start
    fleet = make_fleet(opts, mode, name, env)
    noise = Noise(opts.workdir)
    with fleet:
        if fleet.stale_removed:
            print("removed what an earlier run left: " + ", ".join(fleet.stale_removed))
        kind = fleet.cgroups.kind or f"none ({fleet.cgroups.reason})"
        print(f"{name}: {fleet.count} sandboxes, memory cgroup per sandbox: {kind}", flush=True)
        noise.start()
        try:
            result = asyncio.run(measure(fleet, opts, noise, name))
        finally:
            noise.stop()
    if start is not None:
        result["start"] = start
    result["memory_cgroup_reason"] = fleet.cgroups.reason
    podman = opts.engine == "podman"
    result["left_behind"] = fleet.leftovers() if podman else fs.leftovers(fleet.tag)
    print(
        f"{name}: cleaned up, "
        + (
            "nothing left behind" if not result["left_behind"] else f"LEFT: {result['left_behind']}"
        ),
        flush=True,
    )
    return result


# -- report -----------------------------------------------------------------------------------


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def ratios(modes: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    lazies = lazy_phases(modes)
    lazy, eager = next(iter(lazies.values()), None), modes.get("eager")
    if lazy and eager:
        for key in ("pss", "cgroup_working_set", "cgroup_usage"):
            a = lazy["idle_mib_per_sandbox"].get(key, {}).get("avg")
            b = eager["idle_mib_per_sandbox"].get(key, {}).get("avg")
            if a is not None and b is not None:
                out[f"idle_per_sandbox_lazy_over_eager_{key}"] = ratio(a, b)
        out["mem_available_drop_lazy_over_eager"] = ratio(
            lazy["mem_available_mib"]["drop"], eager["mem_available_mib"]["drop"]
        )
    for name, phase in lazies.items():
        by_k = phase.get("browser_ready_s")
        if not by_k:
            continue
        ks = sorted(int(k) for k in by_k)
        low, high = by_k[str(ks[0])], by_k[str(ks[-1])]
        prefix = "" if name == "lazy" else f"{name}_"
        for stat in ("p50", "max"):
            out[f"{prefix}browser_ready_{stat}_k{ks[-1]}_over_k{ks[0]}"] = ratio(
                high.get(stat), low.get(stat)
            )
    out.update(start_ratios(lazies))
    return out


def start_ratios(lazies: dict[str, Any]) -> dict[str, Any]:
    """BROWSER_STACK_START=needed against all at each K both ran: the gates'
    answers and the whole stack, p50 and max."""
    out: dict[str, Any] = {}
    needed, all_ = lazies.get("lazy-needed"), lazies.get("lazy-all")
    if not needed or not all_:
        return out
    for k in sorted(set(needed["browser_ready_s"]) & set(all_["browser_ready_s"]), key=int):
        a, b = needed["browser_ready_s"][k], all_["browser_ready_s"][k]
        for stat in ("p50", "max"):
            out[f"needed_over_all_ensure_{stat}_k{k}"] = ratio(a.get(stat), b.get(stat))
            out[f"needed_over_all_stack_{stat}_k{k}"] = ratio(
                a["stack_all_s"].get(stat), b["stack_all_s"].get(stat)
            )
    return out


def cpu_report(modes: dict[str, Any]) -> str:
    """Per K: the CPU the K starts used, the bound it sets (CPU s / cores: the
    shortest makespan possible), and what was seen, to the last answer and to
    the end of every start."""
    rows = []
    for name, phase in lazy_phases(modes).items():
        for k, s in phase.get("browser_ready_s", {}).items():
            cpu = s.get("cpu")
            if not cpu:
                continue
            answers, stack, whole = cpu["answers"], cpu["stack"], s["stack_all_s"]
            foreign = statistics.median(r["foreign"]["foreign_cpu_mean_pct"] for r in cpu["rounds"])
            rows.append(
                [
                    name,
                    k,
                    answers["cpu_s"],
                    answers["bound_s"],
                    f"{s.get('p50', '-')} / {s.get('max', '-')}",
                    stack["cpu_s"],
                    stack["bound_s"],
                    f"{whole.get('p50', '-')} / {whole.get('max', '-')}",
                    f"{foreign:.0f}%",
                ]
            )
    header = [
        "mode",
        "K",
        "CPU s to last answer",
        "bound s",
        "ensure p50 / max s",
        "CPU s to all ended",
        "bound s",
        "whole stack p50 / max s",
        "other work, % of a core",
    ]
    return table(header, rows) if rows else ""


def report(results: dict[str, Any]) -> str:
    modes = results["modes"]
    parts = ["### Capacity at idle (all booted at once, then settled)", ""]
    rows = []
    for mode, r in modes.items():
        mem = r["idle_mib_per_sandbox"]
        sources = [("PSS summed over its processes", "pss")]
        if "cgroup_working_set" in mem:
            kind = r["memory_cgroup"]
            sources += [
                (f"cgroup {kind} working set", "cgroup_working_set"),
                (f"cgroup {kind} usage", "cgroup_usage"),
            ]
        for label, key in sources:
            s = mem[key]
            rows.append([mode, s["count"], label, s["total"], s["avg"], s["max"]])
        avail = r["mem_available_mib"]
        rows.append(
            [
                mode,
                r["sandboxes"],
                "machine MemAvailable drop",
                avail["drop"],
                avail["drop_per_sandbox"],
                "",
            ]
        )
    parts.append(
        table(
            ["mode", "sandboxes", "memory", "total MiB", "average MiB", "max MiB"], rows
        )
    )
    parts += ["", "### Startup (ready latency)", ""]
    rows = []
    for mode, r in modes.items():
        boot = r["boot_ready_s"]
        what = "boot: all five pass their probes" if mode == "eager" else "boot: sidecar ready"
        failed = len(boot["failures"]) + len(boot["respawns"])
        rows.append(
            [mode, what, r["sandboxes"], boot.get("p50", "-"), boot.get("max", "-"), "", failed]
        )
        for k, s in r.get("browser_ready_s", {}).items():
            whole = s["stack_all_s"]
            rows.append(
                [
                    mode,
                    "first browser: ensure needs=cdp",
                    f"{k} at once",
                    s.get("p50", "-"),
                    s.get("max", "-"),
                    f"{whole.get('p50', '-')} / {whole.get('max', '-')}",
                    s["errors"],
                ]
            )
    header = [
        "mode",
        "ready when",
        "concurrent",
        "p50 s",
        "max s",
        "all five p50 / max s",
        "errors",
    ]
    parts.append(table(header, rows))
    cpu = cpu_report(modes)
    if cpu:
        cores_ = next(
            s["cpu"]["cores"]
            for phase in lazy_phases(modes).values()
            for s in phase.get("browser_ready_s", {}).values()
            if s.get("cpu")
        )
        parts += [
            "",
            f"### The K starts against the machine's CPU ({cores_} cores; medians of the "
            "rounds; bound = CPU s / cores, the shortest makespan possible)",
            "",
            cpu,
        ]
    lazy = next(iter(lazy_phases(modes).values()), None)
    if lazy and "release" in lazy:
        rel = lazy["release"]
        idle = lazy["idle_mib_per_sandbox"]
        parts += ["", "### Release (lazy: idle stop after the last round)", ""]
        rows = [
            [
                "idle, before any use",
                idle["pss"]["avg"],
                idle.get("cgroup_working_set", {}).get("avg", "-"),
            ]
        ]
        rows.append(
            [
                f"after the idle stop ({rel['waited_s']} s), all",
                rel["memory"]["pss"]["avg"],
                rel["memory"].get("cgroup_working_set", {}).get("avg", "-"),
            ]
        )
        rows.append(
            [
                f"after the idle stop, the {len(rel['used'])} used",
                rel["memory_used_sandboxes"]["pss"]["avg"],
                rel["memory_used_sandboxes"].get("cgroup_working_set", {}).get("avg", "-"),
            ]
        )
        parts.append(table(["per sandbox", "PSS MiB", "cgroup working set MiB"], rows))
        if rel["not_stopped"]:
            parts.append(
                f"\nnot stopped by the idle monitor in time: sandboxes {rel['not_stopped']}"
            )
    parts += ["", "### Ratios (same run)", ""]
    parts.append(
        table(["ratio", "value"], [[k, v] for k, v in results["ratios"].items()])
    )
    for mode, r in modes.items():
        for k, s in r.get("browser_ready_s", {}).items():
            for detail in s["error_details"][:20]:
                parts.append(f"- {mode} K={k}: {detail[:300]}")
    note = closing_note(modes)
    if note:
        parts += ["", note]
    return "\n".join(parts)


def closing_note(modes: dict[str, Any]) -> str:
    """One line per K: the answers' and the whole stack's p50 and max against
    the CPU bound (the medians of the rounds), and what went wrong."""
    lines = []
    for name, phase in lazy_phases(modes).items():
        for k, s in phase.get("browser_ready_s", {}).items():
            cpu = s.get("cpu")
            if not cpu or "p50" not in s:
                continue
            answers, stack, whole = cpu["answers"], cpu["stack"], s["stack_all_s"]
            times = ratio(s["max"], answers["bound_s"])
            errors = ", ".join(f"{n} {kind}" for kind, n in s["error_kinds"].items()) or "none"
            lines.append(
                f"{name} K={k}: ensure p50 {s['p50']:.1f} s, max {s['max']:.1f} s against a "
                f"CPU bound of {answers['bound_s']:.1f} s (max {times} x); whole stack p50 "
                f"{whole.get('p50', float('nan')):.1f} s, max {whole.get('max', float('nan')):.1f}"
                f" s against {stack['bound_s']:.1f} s; problems: {errors}"
            )
    return "\n".join(lines)


def plot(runs: list[dict[str, Any]], png: Path) -> None:
    """Memory against N (each run's sandboxes summed one by one, and its cgroup
    total), browser-ready latency against K; one or more runs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = {"eager": "tab:red", "lazy": "tab:blue"}
    labelled: set[str] = set()
    for results in runs:
        for mode, r in results["modes"].items():
            mem = r["idle_mib_per_sandbox"]
            sums = [0.0]
            for value in mem["pss"]["samples"]:
                sums.append(sums[-1] + value / 1024)
            label = f"{mode}: PSS, summed sandbox by sandbox"
            left.plot(range(len(sums)), sums, "-", color=colors.get(mode, "tab:green"),
                      label=None if label in labelled else label)  # fmt: skip
            labelled.add(label)
            if "cgroup_working_set" in mem:
                label = f"{mode}: cgroup working set, all N"
                total = mem["cgroup_working_set"]["total"] / 1024
                left.plot([len(sums) - 1], [total], "o", mfc="none",
                          color=colors.get(mode, "tab:green"),
                          label=None if label in labelled else label)  # fmt: skip
                labelled.add(label)
    left.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set_xlim(left=0)
    left.set_ylim(bottom=0)
    left.set_xlabel("N sandboxes, idle (booted together)")
    left.set_ylabel("memory, GiB")
    left.set_title("Memory against N")
    left.legend(fontsize=8)
    left.grid(alpha=0.3)
    ticks: set[int] = set()
    for results in runs:
        for name, lazy in lazy_phases(results["modes"]).items():
            by_k = lazy.get("browser_ready_s", {})
            if not by_k:
                continue
            n = lazy["sandboxes"]
            which = f"N={n}" if name == "lazy" else f"{name}, N={n}"
            ks = sorted(int(k) for k in by_k)
            ticks.update(ks)
            for k in ks:
                samples = by_k[str(k)].get("samples", [])
                right.scatter([k] * len(samples), samples, s=8, alpha=0.3, color="tab:blue")
            right.plot(ks, [by_k[str(k)].get("p50") for k in ks], "-o", label=f"p50 ({which})")
            right.plot(ks, [by_k[str(k)].get("max") for k in ks], "--o", label=f"max ({which})")
    if ticks:
        right.set_xticks(sorted(ticks))
        right.legend(fontsize=8)
    right.set_ylim(bottom=0)
    right.set_xlabel("K sandboxes calling ensure(needs=cdp) at once")
    right.set_ylabel("ensure elapsed_ms, s")
    right.set_title("First browser use (lazy)")
    right.grid(alpha=0.3)
    machine = runs[0]["machine"]
    when = ", ".join(sorted({r["started"][:16] for r in runs}))
    fig.suptitle(f"{machine['cores']} cores, {machine['memory_gib']} GiB: {when}", fontsize=9)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


# -- main -------------------------------------------------------------------------------------


def _git_commit() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        )
        return out.stdout.strip()
    return ""


def _sigterm(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt  # the same orderly cleanup as Ctrl-C


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sandboxes", type=int, default=10, help="N (10)")
    parser.add_argument(
        "--concurrent", default="1,N", help="K values, comma-separated; N = all (1,N)"
    )
    parser.add_argument("--mode", choices=("eager", "lazy", "both"), default="both")
    parser.add_argument("--rounds", type=int, default=3, help="first-use rounds per K (3)")
    parser.add_argument(
        "--settle", type=float, default=10.0, help="s after boot before memory (10)"
    )
    parser.add_argument(
        "--idle-timeout", type=float, default=30.0, help="lazy sidecar's idle stop, s (30)"
    )
    parser.add_argument("--boot-timeout", type=float, default=300.0, help="s per sandbox (300)")
    parser.add_argument(
        "--round-timeout", type=float, default=180.0, help="s for a round's starts (180)"
    )
    parser.add_argument(
        "--pause", type=float, default=2.0, help="s between a round's stop and its start (2)"
    )
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "fleet.json")
    parser.add_argument("--plot", type=Path, default=REPO / "bench" / "out" / "fleet.png")
    parser.add_argument("--no-plot", action="store_true", help="write no PNG")
    parser.add_argument(
        "--workdir",
        type=Path,
        default=REPO / "bench" / "out" / "fleet-run",
        help="config and logs per sandbox, kept after the run; not under /tmp",
    )
    parser.add_argument(
        "--programs-conf",
        type=Path,
        default=fs.PROGRAMS_CONF,
        help="the five programs' supervisord file (tests pass stand-ins)",
    )
    parser.add_argument(
        "--sidecar-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for every sandbox (e.g. BROWSER_STACK_READY_GRACE=60)",
    )
    parser.add_argument(
        "--engine",
        choices=("netns", "podman"),
        default="netns",
        help="netns: supervisords in namespaces; podman: containers of --image (netns)",
    )
    parser.add_argument("--image", default="", help="podman: the image (scripts/build-image.sh)")
    parser.add_argument("--memory-limit", help="podman: each container's limit, e.g. 1536m")
    parser.add_argument(
        "--start",
        default="",
        help="lazy: BROWSER_STACK_START values, comma-separated, a lazy phase each "
        "(e.g. all,needed); default: the sidecar's default, one phase",
    )
    parser.add_argument(
        "--cleanup", action="store_true", help="remove what killed runs left, and exit"
    )
    parser.add_argument(
        "--from-json",
        type=Path,
        nargs="+",
        help="print the tables of earlier runs' JSON, and --plot them together",
    )
    args = parser.parse_args(argv)
    if args.no_plot:
        args.plot = None
    elif why := no_plot_here():
        print(f"fleet: no plot: {why}; the run goes on without it", file=sys.stderr, flush=True)
        args.plot = None
    if args.cleanup:
        removed = fs.cleanup_stale()
        if args.engine == "podman":
            from . import fleet_podman

            removed += fleet_podman.containers.sweep()
        print("removed: " + (", ".join(removed) or "nothing"))
        return 0
    if args.from_json:
        runs = [json.loads(path.read_text()) for path in args.from_json]
        for path, earlier in zip(args.from_json, runs, strict=True):
            print(f"## {path}: {earlier['command']}, {earlier['started']}\n")
            print(report(earlier) + "\n")
        if args.plot:
            plot(runs, args.plot)
            print(f"wrote {args.plot}")
        return 0
    if args.sandboxes < 1 or args.rounds < 1:
        parser.error("--sandboxes and --rounds must be at least 1")
    try:
        concurrent = sorted(
            {args.sandboxes if k.strip() == "N" else int(k) for k in args.concurrent.split(",")}
        )
    except ValueError:
        parser.error("--concurrent takes numbers and N, comma-separated")
    starts = [s.strip() for s in args.start.split(",") if s.strip()]
    if set(starts) - {"all", "needed"} or len(set(starts)) != len(starts):
        parser.error("--start takes all and needed, comma-separated, each once")
    env = {}
    for item in args.sidecar_env:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--sidecar-env {item}: expected NAME=VALUE")
        env[name] = value
    if args.engine == "podman" and not args.image:
        parser.error("--engine podman needs --image")
    why = fs.tools_missing() if args.engine == "netns" else None
    if why:
        print(f"fleet: {why}", file=sys.stderr)
        return 2
    if args.engine == "netns" and args.programs_conf.resolve() == fs.PROGRAMS_CONF:
        missing = fs.missing_programs()
        if missing:
            print(
                f"fleet: not found on PATH: {', '.join(missing)} (scripts/install-deps.sh)",
                file=sys.stderr,
            )
            return 2
    opts = Options(
        sandboxes=args.sandboxes,
        concurrent=concurrent,
        modes=list(MODES) if args.mode == "both" else [args.mode],
        rounds=args.rounds,
        settle_s=args.settle,
        idle_timeout_s=args.idle_timeout,
        boot_timeout_s=args.boot_timeout,
        round_timeout_s=args.round_timeout,
        pause_s=args.pause,
        workdir=args.workdir.resolve(),
        programs_conf=args.programs_conf.resolve(),
        sidecar_env=env,
        engine=args.engine,
        image=args.image,
        memory_limit=args.memory_limit,
        starts=starts,
    )
    signal.signal(signal.SIGTERM, _sigterm)
    results: dict[str, Any] = {
        "started": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": _git_commit(),
        "command": "bench/fleet.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine(),
        "engine": args.engine,
        "image": args.image or None,
        "memory_limit": args.memory_limit,
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
        "memory_sources": {
            "pss": "PSS (and USS) summed over the sandbox's processes, from smaps_rollup",
            "cgroup": "the sandbox's memory cgroup: v2 memory.current or v1 "
            "memory.usage_in_bytes; working set = usage minus inactive file pages "
            "(what kubectl top shows)",
        },
        "modes": {},
    }
    try:
        for name, mode, start in phases(opts):
            results["modes"][name] = run_mode(opts, mode, name, start)
    except KeyboardInterrupt:
        print("fleet: interrupted; every sandbox was removed", file=sys.stderr)
        return 130
    except fs.FleetError as exc:
        print(f"fleet: {exc}", file=sys.stderr)
        return 1
    results["ratios"] = ratios(results["modes"])
    print()
    print(report(results))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    if args.plot:
        plot([results], args.plot)
        print(f"wrote {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
