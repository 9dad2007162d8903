"""Prometheus metrics (prometheus-client), in a registry of the app's own."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from browser_stack.stack import PROGRAMS
from browser_stack.states import ALIVE_STATES

START_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.5, 5.0, 10.0, 30.0, 60.0)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """Implements the controller's Observer and renders the text format."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.ensure_requests = Counter(
            "browser_stack_ensure_requests", "Ensure calls by outcome", ["outcome"], registry=r
        )
        self.ensure_joined_total = Counter(
            "browser_stack_ensure_joined",
            "Ensure calls that joined a start already in flight",
            registry=r,
        )
        self.cold_starts = Counter(
            "browser_stack_cold_starts", "Starts of (part of) the stack", registry=r
        )
        self.start_duration = Histogram(
            "browser_stack_start_duration_seconds",
            "From the start's beginning to each program's readiness; program=stack: all five",
            ["program"],
            buckets=START_BUCKETS,
            registry=r,
        )
        self.ensure_duration = Histogram(
            "browser_stack_ensure_duration_seconds",
            "Ensure latency by outcome",
            ["outcome"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, *START_BUCKETS[2:]),
            registry=r,
        )
        self.probes = Counter(
            "browser_stack_probes",
            "Readiness probes run, by program and purpose (start, liveness); a warm "
            "ensure runs none",
            ["program", "purpose"],
            registry=r,
        )
        self.supervisor_calls = Counter(
            "browser_stack_supervisor_calls",
            "XML-RPC calls to supervisord, by method; a warm ensure makes none",
            ["method"],
            registry=r,
        )
        self.program_exits = Counter(
            "browser_stack_program_exits",
            "Ready programs whose process exited (not stopped by the sidecar)",
            ["program"],
            registry=r,
        )
        self.liveness_failures = Counter(
            "browser_stack_liveness_failures",
            "Ready programs that failed a liveness check",
            ["program"],
            registry=r,
        )
        self.stops = Counter(
            "browser_stack_stops", "Stops of the stack by reason", ["reason"], registry=r
        )
        self.idle_check_errors = Counter(
            "browser_stack_idle_check_errors",
            "Idle checks that failed, by error; idle stop goes on with the next check",
            ["error"],
            registry=r,
        )
        self.program_state = Gauge(
            "browser_stack_program_state",
            "supervisord's state code (0 STOPPED, 10 STARTING, 20 RUNNING, 30 BACKOFF, "
            "40 STOPPING, 100 EXITED, 200 FATAL, 1000 UNKNOWN; -1 not configured)",
            ["program"],
            registry=r,
        )
        self.program_ready_gauge = Gauge(
            "browser_stack_program_ready",
            "1 when the program is ready (readiness.py)",
            ["program"],
            registry=r,
        )
        self.program_memory = Gauge(
            "browser_stack_program_memory_bytes",
            "Memory of the program's process tree",
            ["program", "kind"],
            registry=r,
        )
        self.program_processes = Gauge(
            "browser_stack_program_processes",
            "Processes in the program's tree",
            ["program"],
            registry=r,
        )

        # The fleet view: summed over every sandbox's scrape, how many hold a stack.
        self.awake = Gauge(
            "browser_stack_awake",
            "1 when any of the five programs runs, so the browser stack holds memory; "
            "sum over pods to count the sandboxes with a browser awake",
            registry=r,
        )
        self.lazy = Gauge(
            "browser_stack_lazy", "1 when the five stay stopped at boot (lazy mode)", registry=r
        )
        self.idle_timeout = Gauge(
            "browser_stack_idle_timeout_seconds",
            "Seconds without use before the stack is stopped; 0: never",
            registry=r,
        )

        self.proxy_connections = Gauge(
            "browser_stack_proxy_open_connections",
            "Connections open through the activation proxy, per public port",
            ["route"],
            registry=r,
        )
        self.proxy_accepted = Gauge(
            "browser_stack_proxy_accepted_connections",
            "Connections accepted by the activation proxy since start",
            ["route"],
            registry=r,
        )
        self.proxy_bytes = Gauge(
            "browser_stack_proxy_bytes",
            "Bytes spliced by the activation proxy since start",
            ["route", "direction"],
            registry=r,
        )

        # The outcomes of nearly every call, looked up once.
        self._outcomes = {
            o: (self.ensure_requests.labels(o), self.ensure_duration.labels(o))
            for o in ("warm", "cold")
        }

    # -- Observer ----------------------------------------------------------

    def ensure_done(self, outcome: str, seconds: float) -> None:
        children = self._outcomes.get(outcome)
        if children is None:  # an error code: rare
            children = self.ensure_requests.labels(outcome), self.ensure_duration.labels(outcome)
        children[0].inc()
        children[1].observe(seconds)

    def ensure_joined(self) -> None:
        self.ensure_joined_total.inc()

    def probed(self, program: str, purpose: str) -> None:
        self.probes.labels(program, purpose).inc()

    def program_exited(self, program: str) -> None:
        self.program_exits.labels(program).inc()

    def liveness_failed(self, program: str) -> None:
        self.liveness_failures.labels(program).inc()

    def supervisor_called(self, method: str) -> None:
        self.supervisor_calls.labels(method).inc()

    def start_begun(self) -> None:
        self.cold_starts.inc()

    def program_ready(self, program: str, seconds: float) -> None:
        self.start_duration.labels(program).observe(seconds)

    def start_ended(self, seconds: float, ok: bool) -> None:
        if ok:
            self.start_duration.labels("stack").observe(seconds)

    def stopped(self, reason: str) -> None:
        self.stops.labels(reason).inc()

    def idle_check_failed(self, error: str) -> None:
        self.idle_check_errors.labels(error).inc()

    # -- gauges, refreshed at scrape time ----------------------------------

    def set_mode(self, lazy: bool, idle_timeout_s: float) -> None:
        self.lazy.set(1 if lazy else 0)
        self.idle_timeout.set(idle_timeout_s)

    def update_programs(
        self, states: Mapping[str, int], ready: Mapping[str, bool], memory: Mapping[str, Any]
    ) -> None:
        alive = {int(state) for state in ALIVE_STATES}
        self.awake.set(1 if any(code in alive for code in states.values()) else 0)
        for program in PROGRAMS:
            name = str(program)
            self.program_state.labels(name).set(states.get(name, -1))
            self.program_ready_gauge.labels(name).set(1 if ready.get(name) else 0)
            tree = memory.get(name)
            if tree is not None:
                self.program_processes.labels(name).set(tree["processes"])
                for kind in ("uss", "pss", "rss"):
                    self.program_memory.labels(name, kind).set(tree[f"{kind}_bytes"])

    def update_proxy(self, stats: Mapping[str, Mapping[str, Any]]) -> None:
        for route, st in stats.items():
            self.proxy_connections.labels(route).set(st["open_connections"])
            self.proxy_accepted.labels(route).set(st["accepted"])
            self.proxy_bytes.labels(route, "up").set(st["bytes_up"])
            self.proxy_bytes.labels(route, "down").set(st["bytes_down"])

    def render(self) -> bytes:
        return generate_latest(self.registry)
