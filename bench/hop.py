"""What one more process on the path costs a small round trip, whatever its loop.

Why bench/proxy_overhead.py's `Runtime.evaluate` ratio misses 1.05: is it our asyncio
code, or the hop itself? A 200-byte ping-pong (TCP_NODELAY, one connection,
N round trips) to a threaded echo server, three ways, interleaved:

  direct    client -> echo
  asyncio   client -> the real ActivationProxy (own process) -> echo
  threads   client -> a blocking splice, one thread per direction, recv_into +
            sendall (own process): the least Python a forward can take -> echo

Prints the median round trip of each, per run and overall, and what each proxy
adds. Not a test: nothing is asserted.

    .venv/bin/python -m bench.hop [--runs 5] [--trips 5000]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

from . import proxy_overhead

REPO = Path(__file__).resolve().parent.parent

LOOPBACK = "127.0.0.1"
MESSAGE = b"x" * 200


def listener() -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((LOOPBACK, 0))
    s.listen()
    return s


def nodelay(s: socket.socket) -> socket.socket:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def serve_echo(server: socket.socket) -> None:
    def echo(c: socket.socket) -> None:
        nodelay(c)
        while data := c.recv(65536):
            c.sendall(data)

    while True:
        c, _ = server.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()


def serve_threads(server: socket.socket, upstream: int) -> None:
    def pipe(a: socket.socket, b: socket.socket) -> None:
        buf = bytearray(65536)
        view = memoryview(buf)
        while n := a.recv_into(buf):
            b.sendall(view[:n])
        b.shutdown(socket.SHUT_WR)

    while True:
        c, _ = server.accept()
        u = nodelay(socket.create_connection((LOOPBACK, upstream)))
        nodelay(c)
        threading.Thread(target=pipe, args=(c, u), daemon=True).start()
        threading.Thread(target=pipe, args=(u, c), daemon=True).start()


def start(kind: str, upstream: int) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.hop", "--serve", kind, "--upstream", str(upstream)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    return process, int(process.stdout.readline())


def ping_pong(port: int, trips: int) -> float:
    with nodelay(socket.create_connection((LOOPBACK, port))) as c:
        times = []
        for _ in range(trips):
            began = time.perf_counter()
            c.sendall(MESSAGE)
            got = 0
            while got < len(MESSAGE):
                got += len(c.recv(65536))
            times.append((time.perf_counter() - began) * 1e6)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trips", type=int, default=5000)
    parser.add_argument("--serve", choices=("echo", "threads"), help=argparse.SUPPRESS)
    parser.add_argument("--upstream", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        server = listener()
        print(server.getsockname()[1], flush=True)
        if args.serve == "echo":
            serve_echo(server)
        else:
            serve_threads(server, args.upstream)
        return 0
    if args.runs < 1 or args.trips < 1:
        parser.error("--runs and --trips must be at least 1")

    echo, echo_port = start("echo", 0)
    servers = [echo]
    try:
        ports = {"direct": echo_port}
        # The real proxy, served the way bench/proxy_overhead.py serves it.
        process, ports["asyncio"] = proxy_overhead.start_proxy(echo_port, "asyncio")
        servers.append(process)
        process, ports["threads"] = start("threads", echo_port)
        servers.append(process)
        medians: dict[str, list[float]] = {k: [] for k in ports}
        for run in range(args.runs):
            order = list(ports)[run % 3 :] + list(ports)[: run % 3]
            for kind in order:
                medians[kind].append(ping_pong(ports[kind], args.trips))
            line = ", ".join(f"{k} {medians[k][-1]:.1f}" for k in ports)
            print(f"run {run + 1}: median round trip us: {line}", flush=True)
    finally:
        for process in servers:
            process.kill()
            process.wait()
    overall = {k: statistics.median(v) for k, v in medians.items()}
    print(f"\n{args.trips} round trips of {len(MESSAGE)} bytes, median of {args.runs} runs\n")
    print("| path | round trip us | added us | ratio |")
    print("|---|--:|--:|--:|")
    for kind, value in overall.items():
        added = value - overall["direct"]
        print(f"| {kind} | {value:.1f} | {added:+.1f} | {value / overall['direct']:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
