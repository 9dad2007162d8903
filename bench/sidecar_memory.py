"""The sidecar's own memory against a bare aiohttp server, on the real stack.

The sidecar sits in every idle sandbox, so its memory at rest is measured
against the floor of any aiohttp service: a bare aiohttp server that answers a
small JSON, started by the same Python in the same run. Both run under the
same conditions: the real five programs and the sidecar under a private
supervisord (scripts/local_stack.py), the stack stopped, and each of the two
measured while the other is not running (the sidecar through supervisord's
stopProcess/startProcess), since USS counts a file page as private when no
other process maps it: aiohttp's and OpenSSL's libraries are the sidecar's own
in a sandbox, where no other process loads them.

  at rest     N rounds (--rounds), interleaved: the bare server, then a fresh
              sidecar, each measured 2 s after its first answer (/ and /healthz);
              also Python alone, with asyncio imported and with aiohttp.web
              imported (no server), which says what the floor is made of
  the bare    a bare server again after as many GETs as the sidecar's warm
  server      ensures and the same two bursts: what aiohttp's own serving leaves
  after use   the last fresh sidecar after its first (cold) ensure, after
              --requests warm ensures (--concurrency clients), after a wrk burst
              of --burst-clients connections for --burst-seconds and after a
              second one (a high-water mark stays, a leak grows again), and after
              a stop of the five (back to an idle sandbox's state)

Each figure: USS, PSS, RSS (psutil's memory_full_info) and the anonymous part
(/proc/PID/smaps_rollup), which is what a sandbox pays even when the file
pages are shared with other sandboxes on the node. The file part of USS moves
with whatever else on the machine maps the same libraries at the moment
(node and Xvnc map libstdc++ and libcrypto, as aiohttp's frozenlist and ssl
do): the ratio is taken per round, from two processes measured seconds apart,
and the median of the rounds is reported. Prints markdown tables and ratios,
writes JSON; asserts nothing.

    .venv/bin/python -m bench.sidecar_memory [--rounds 3] [--requests 10000]

The sidecar's modules are compiled to bytecode first (compileall), as aiohttp's
are by pip and as the image's are (UV_COMPILE_BYTECODE). This process loads
neither aiohttp nor asyncio, so that it shares few of their pages with the two
servers (it does load psutil, as the sidecar does, and ssl with http.client, as
both servers do; supervisord is the same Python). The ports and display come
from the environment like scripts/local_stack.py's; the sidecar keeps its
defaults otherwise (BROWSER_STACK_LOG_FORMAT and the like are passed on when
set). Needs `wrk`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil

from scripts import local_stack
from tests.helpers import free_port

from .report import table

REPO = Path(__file__).resolve().parent.parent

MIB = 1024 * 1024
SIDECAR = "browser-stack"
ENSURE = "/v1/browser-stack/ensure"
SETTLE_S = 2.0
KINDS = ("uss", "pss", "rss", "anon")

BARE_APP = """\
import sys
from aiohttp import web
async def ok(request):
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_get("/", ok)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""
# What the floor is made of: the interpreter, asyncio, aiohttp's import.
FLOORS = {
    "Python alone": "",
    "Python, asyncio imported": "import asyncio",
    "Python, aiohttp.web imported": "from aiohttp import web",
}
POST_LUA = """\
wrk.method = "POST"
wrk.body = "{}"
wrk.headers["Content-Type"] = "application/json"
"""


def memory_of(pid: int) -> dict[str, float]:
    info = psutil.Process(pid).memory_full_info()
    anon = 0
    with open(f"/proc/{pid}/smaps_rollup", encoding="ascii") as f:
        for line in f:
            if line.startswith("Anonymous:"):
                anon = int(line.split()[1]) * 1024
    return {
        "uss": round(info.uss / MIB, 2),
        "pss": round(info.pss / MIB, 2),
        "rss": round(info.rss / MIB, 2),
        "anon": round(anon / MIB, 2),
    }


def wait_answer(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@contextlib.contextmanager
def bare_server() -> Iterator[tuple[int, str]]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-c", BARE_APP, str(port)])
    try:
        url = f"http://127.0.0.1:{port}/"
        wait_answer(url)
        yield process.pid, url
    finally:
        process.terminate()
        process.wait()


def floor(code: str) -> dict[str, float]:
    """A Python process that imports `code` and waits."""
    script = f"{code}\nimport sys, time\nprint(flush=True)\ntime.sleep(600)\n"
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)
    try:
        assert process.stdout is not None
        process.stdout.readline()
        time.sleep(SETTLE_S)
        return memory_of(process.pid)
    finally:
        process.kill()
        process.wait()


class Stack:
    def __init__(self, root: Path, base: str) -> None:
        self.root = root
        self.base = base

    def rpc(self, method: str, *args: Any) -> Any:
        return local_stack.rpc(self.root, method, *args)

    def stop_sidecar(self) -> None:
        self.rpc("stopProcess", SIDECAR, True)

    def start_sidecar(self) -> int:
        """A fresh sidecar, answering; its pid."""
        self.rpc("startProcess", SIDECAR, True)
        wait_answer(self.base + "/healthz")
        return int(self.rpc("getProcessInfo", SIDECAR)["pid"])

    def post(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            self.base + path, data=b"{}", headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return dict(json.loads(response.read()))

    def stack_stopped(self) -> bool:
        infos = self.rpc("getAllProcessInfo")
        return all(
            i["statename"] in ("STOPPED", "EXITED", "FATAL") for i in infos if i["name"] != SIDECAR
        )


def hammer(base: str, method: str, path: str, count: int, concurrency: int) -> int:
    """`count` requests over `concurrency` keep-alive connections; the non-200 count."""
    host, port = base.removeprefix("http://").rsplit(":", 1)
    left = [count]
    bad = [0]
    lock = threading.Lock()

    def worker() -> None:
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        body = b"{}" if method == "POST" else None
        headers = {"Content-Type": "application/json"} if body else {}
        try:
            while True:
                with lock:
                    if left[0] <= 0:
                        return
                    left[0] -= 1
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    with lock:
                        bad[0] += 1
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return bad[0]


def burst(url: str, clients: int, seconds: float, post: bool) -> dict[str, Any]:
    args = ["wrk", "-t2", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s"]
    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        if post:
            lua.write(POST_LUA)
            lua.flush()
            args += ["-s", lua.name]
        out = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    requests = next((line.split()[0] for line in out.splitlines() if "requests in" in line), "?")
    non_2xx = next(
        (line.split(":")[1].strip() for line in out.splitlines() if "Non-2xx" in line), "0"
    )
    return {"requests": requests, "non_2xx": non_2xx}


def median_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: round(statistics.median(r[k] for r in rows), 2) for k in KINDS}


def at_rest(stack: Stack, rounds: int) -> dict[str, Any]:
    floors: dict[str, list[dict[str, float]]] = {name: [] for name in FLOORS}
    bare: list[dict[str, float]] = []
    sidecar: list[dict[str, float]] = []
    for n in range(rounds):
        stack.stop_sidecar()
        for name, code in FLOORS.items():
            floors[name].append(floor(code))
        with bare_server() as (pid, _url):
            time.sleep(SETTLE_S)
            bare.append(memory_of(pid))
        pid = stack.start_sidecar()
        started = time.monotonic()
        time.sleep(SETTLE_S)
        sidecar.append(memory_of(pid))
        print(f"round {n + 1}: bare {bare[-1]}, sidecar {sidecar[-1]}", flush=True)
    return {
        "floors": {name: median_of(rows) for name, rows in floors.items()},
        "bare": median_of(bare),
        "sidecar": median_of(sidecar),
        "rounds": {"bare": bare, "sidecar": sidecar},
        # Per round: the two were measured within seconds of each other, so
        # whatever else maps the same libraries at the moment weighs on both.
        "ratios": {
            k: [round(s[k] / b[k], 3) for b, s in zip(bare, sidecar, strict=True)] for k in KINDS
        },
        "last_sidecar": (pid, started),
    }


def bare_after_use(requests: int, concurrency: int, clients: int, seconds: float) -> dict[str, Any]:
    """The bare server under the same load as the sidecar: what aiohttp's own
    serving leaves. The sidecar is up meanwhile (their shared pages do not
    count in either USS), so this compares the bare server with itself only."""
    with bare_server() as (pid, url):
        time.sleep(SETTLE_S)
        fresh = memory_of(pid)
        base = url.rstrip("/")
        bad = hammer(base, "GET", "/", requests, concurrency)
        time.sleep(SETTLE_S)
        after_requests = memory_of(pid)
        load = burst(url, clients, seconds, post=False)
        time.sleep(SETTLE_S)
        after_burst = memory_of(pid)
        burst(url, clients, seconds, post=False)
        time.sleep(SETTLE_S)
        after_second_burst = memory_of(pid)
    return {
        "fresh": fresh,
        "after_requests": after_requests,
        "after_burst": after_burst,
        "after_second_burst": after_second_burst,
        "non_200": bad,
        "burst": load,
    }


def sidecar_after_use(
    stack: Stack,
    sidecar: tuple[int, float],
    requests: int,
    concurrency: int,
    clients: int,
    seconds: float,
) -> dict[str, Any]:
    """The last fresh sidecar of the at-rest rounds, which has served /healthz
    alone until now (the bare server's run took its time)."""
    pid, started = sidecar
    samples = {f"at rest, {time.monotonic() - started:.0f} s after its start": memory_of(pid)}
    answer = stack.post(ENSURE)
    if not answer.get("ready"):
        raise RuntimeError(f"ensure not ready: {answer}")
    time.sleep(SETTLE_S)
    samples["after the first (cold) ensure"] = memory_of(pid)
    bad = hammer(stack.base, "POST", ENSURE, requests, concurrency)
    time.sleep(SETTLE_S)
    samples[f"after {requests:,} warm ensures"] = memory_of(pid)
    load = burst(stack.base + ENSURE, clients, seconds, post=True)
    time.sleep(SETTLE_S)
    samples[f"after a {clients}-client burst"] = memory_of(pid)
    # Another: a high-water mark stays where it is, a leak grows again.
    burst(stack.base + ENSURE, clients, seconds, post=True)
    time.sleep(SETTLE_S)
    samples["after a second burst"] = memory_of(pid)
    stack.post("/v1/browser-stack/stop")
    deadline = time.monotonic() + 60
    while not stack.stack_stopped() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(SETTLE_S)
    samples["after a stop of the five"] = memory_of(pid)
    return {"samples": samples, "non_200": bad, "burst": load}


def memory_row(name: str, m: dict[str, float]) -> list[Any]:
    return [name, *(f"{m[k]:.1f}" for k in KINDS)]


def report(result: dict[str, Any]) -> str:
    rest, bare_use, use = result["at_rest"], result["bare_after_use"], result["after_use"]
    bare, sidecar = rest["bare"], rest["sidecar"]
    head = ["process", "USS MiB", "PSS MiB", "RSS MiB", "anonymous MiB"]
    out = [f"### At rest (median of {result['rounds']} rounds, each process alone)", ""]
    rows = [memory_row(name, m) for name, m in rest["floors"].items()]
    rows += [memory_row("bare aiohttp server", bare), memory_row("**sidecar**", sidecar)]
    out += [table(head, rows), ""]
    ratios = rest["ratios"]
    uss = ratios["uss"]
    out.append(
        f"sidecar / bare aiohttp server, the median of the rounds' ratios: USS "
        f"**{statistics.median(uss):.3f}** ({min(uss):.3f}-{max(uss):.3f}; "
        f"+{sidecar['uss'] - bare['uss']:.1f} MiB), anonymous "
        f"{statistics.median(ratios['anon']):.3f} (+{sidecar['anon'] - bare['anon']:.1f} MiB), "
        f"PSS {statistics.median(ratios['pss']):.3f}, RSS {statistics.median(ratios['rss']):.3f}"
    )
    out += ["", "### After use", ""]
    samples = use["samples"]
    first = next(iter(samples.values()))
    rows = [
        [
            *memory_row(name, m),
            f"{m['uss'] - first['uss']:+.2f}",
            f"{m['anon'] - first['anon']:+.2f}",
        ]
        for name, m in samples.items()
    ]
    out += [table(["sidecar", *head[1:], "USS - at rest", "anonymous - at rest"], rows), ""]
    cold = samples["after the first (cold) ensure"]
    burst_name = next(n for n in samples if n.endswith("burst"))
    out.append(
        f"after the burst - after the first ensure: USS "
        f"{samples[burst_name]['uss'] - cold['uss']:+.2f} MiB; non-200 answers: "
        f"{use['non_200']} of the warm ensures, {use['burst']['non_2xx']} in the burst "
        f"({use['burst']['requests']} requests)"
    )
    fresh = bare_use["fresh"]
    steps = " -> ".join(
        f"{bare_use[k]['uss']:.1f}"
        for k in ("fresh", "after_requests", "after_burst", "after_second_burst")
    )
    out.append(
        f"the bare server under the same load (fresh, after the requests, the burst, a "
        f"second burst): USS {steps} MiB "
        f"({bare_use['after_second_burst']['uss'] - fresh['uss']:+.2f}; its first burst "
        f"{bare_use['burst']['requests']} requests)"
    )
    return "\n".join(out)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # The sidecar's modules from bytecode, as aiohttp's are (pip compiled them) and
    # as the image installs them: compiling at start costs memory (the compiler's
    # peak stays in the heap) as well as time, in the sidecar only.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(REPO / "src" / "browser_stack")],
        check=True,
    )
    root = Path(tempfile.mkdtemp(prefix="bs-sidecar-mem-"))
    process = local_stack.start(root, listen=args.listen, env=local_stack.kept_up())
    stack = Stack(root, f"http://{args.listen}")
    try:
        local_stack.wait_healthy(stack.base, root, process.pid)
        rest = at_rest(stack, args.rounds)
        load = (args.requests, args.concurrency, args.burst_clients, args.burst_seconds)
        bare_use = bare_after_use(*load)
        use = sidecar_after_use(stack, rest.pop("last_sidecar"), *load)
    finally:
        killed = local_stack.stop(root, process.pid)
        if killed:
            print("killed leftovers:\n  " + "\n  ".join(killed), file=sys.stderr)
        shutil.rmtree(root, ignore_errors=True)
    return {
        "rounds": args.rounds,
        "requests": args.requests,
        "at_rest": rest,
        "bare_after_use": bare_use,
        "after_use": use,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="at-rest rounds (3)")
    parser.add_argument("--requests", type=int, default=10_000, help="warm ensures (10,000)")
    parser.add_argument("--concurrency", type=int, default=16, help="their clients (16)")
    parser.add_argument("--burst-clients", type=int, default=64, help="wrk connections (64)")
    parser.add_argument("--burst-seconds", type=float, default=5, help="wrk duration (5 s)")
    parser.add_argument("--listen", default="127.0.0.1:8127", help="the sidecar's address")
    parser.add_argument("--json", type=Path, default=REPO / "bench" / "out" / "sidecar_memory.json")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.requests < 1:
        parser.error("--rounds and --requests must be at least 1")
    began = dt.datetime.now().astimezone()
    try:
        result = run(args)
    except local_stack.StackError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    result["started"] = began.isoformat(timespec="seconds")
    result["python"] = sys.version.split()[0]
    result["settings"] = {
        k: v
        for k, v in os.environ.items()
        if k.startswith("BROWSER_STACK_") and k != "BROWSER_STACK_TOKEN"
    }
    print()
    print(report(result))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
