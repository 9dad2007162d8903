"""Sandboxes per node, eager against lazy, computed from the measured idle figures.

Reads its inputs from bench/README.md itself, the one place measured figures live:
the idle memory per sandbox of the container fleet (eager and lazy, cgroup working
set: what `kubectl top` and the kubelet's eviction read) and the sidecar's own PSS
in a container. The whole-pod figures of an AIO pod are agent-infra/sandbox issue
198's (a DeerFlow/kind test): 413 MiB idle with the browser stack, 143-178 MiB
with it stopped too (Jupyter and code-server off in both).

    .venv/bin/python -m bench.capacity            # print the tables
    .venv/bin/python -m bench.capacity --write    # and put them into the docs

The full tables go between bench/README.md's `<!-- capacity.py -->` markers, the
headline (the saving and the AIO pod's table) between the `<!-- capacity.py
headline -->` markers of README.md and docs/aio-image.md; tests/bench/test_capacity.py
checks each holds what this script computes from bench/README.md's figures.
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
README = REPO / "bench" / "README.md"
FULL = ("<!-- capacity.py -->", "<!-- /capacity.py -->")
HEADLINE = ("<!-- capacity.py headline -->", "<!-- /capacity.py headline -->")
# Where each block goes, relative to the repository.
BLOCKS = {"bench/README.md": FULL, "README.md": HEADLINE, "docs/aio-image.md": HEADLINE}
NODES_GIB = (16, 32, 64, 128)
AWAKE = (0.0, 0.25, 1.0)
AT_N = (10, 40, 100)
# agent-infra/sandbox issue 198: one AIO sandbox pod, idle, with Jupyter and
# code-server off: with the browser stack, and with it stopped too (a range).
AIO_WITH_STACK_MIB = 413.0
AIO_WITHOUT_STACK_MIB = (143.0, 178.0)


@dataclass(frozen=True)
class Inputs:
    lazy_mib: float  # a lazy sandbox, idle, before any use
    eager_mib: float  # the same image eager: the five up and idle
    sidecar_mib: float  # the sidecar's PSS in a lazy container

    @property
    def stack_mib(self) -> float:
        """What the five hold in a sandbox: the saving of a lazy one asleep."""
        return self.eager_mib - self.lazy_mib


def inputs(readme: str) -> Inputs:
    """The measured figures, from "Many sandboxes as containers" in the README."""
    row = re.search(r"^\| cgroup v1 working set \| ([0-9.]+) \| ([0-9.]+) \|", readme, re.M)
    sidecar = re.search(
        r"alone, settled: supervisord [0-9.]+ MiB PSS, the sidecar ([0-9.]+)", readme
    )
    if row is None or sidecar is None:
        raise SystemExit("capacity.py: the container fleet's figures are not in the README")
    return Inputs(float(row[1]), float(row[2]), float(sidecar[1]))


@dataclass(frozen=True)
class Pod:
    """Per-sandbox idle memory of one kind of pod: eager, and lazy with a share
    `p` of the sandboxes holding a browser awake."""

    name: str
    eager_mib: float
    asleep_mib: float  # lazy, browser stopped
    awake_mib: float  # lazy, browser up

    def lazy_mib(self, p: float) -> float:
        return self.asleep_mib + p * (self.awake_mib - self.asleep_mib)


def pods(measured: Inputs) -> list[Pod]:
    stand_in = Pod(
        "the stack's share: the AIO stand-in measured here (supervisord, nginx, the "
        "sidecar, the five)",
        measured.eager_mib,
        measured.lazy_mib,
        measured.eager_mib,
    )
    # The real image with this layer: issue 198's pod without the stack (the upper
    # end of its range), plus the sidecar; awake, its pod with the stack plus the
    # sidecar. Its eager column is the image as it is today, without the layer.
    aio = Pod(
        f"an AIO pod: issue 198's {AIO_WITH_STACK_MIB:g} MiB eager, "
        f"{AIO_WITHOUT_STACK_MIB[1]:g} MiB without the stack, plus the sidecar's "
        f"{measured.sidecar_mib:g} MiB when lazy",
        AIO_WITH_STACK_MIB,
        AIO_WITHOUT_STACK_MIB[1] + measured.sidecar_mib,
        AIO_WITH_STACK_MIB + measured.sidecar_mib,
    )
    return [stand_in, aio]


def per_node(node_gib: int, mib: float) -> int:
    return math.floor(node_gib * 1024 / mib)


def table(pod: Pod) -> list[str]:
    out = [
        "| node | eager | " + " | ".join(f"lazy, {p:.0%} awake" for p in AWAKE) + " |",
        "|---|--:" + "|--:" * len(AWAKE) + "|",
    ]
    for gib in NODES_GIB:
        cells = [per_node(gib, pod.eager_mib)] + [per_node(gib, pod.lazy_mib(p)) for p in AWAKE]
        out.append(f"| {gib} GiB | " + " | ".join(str(c) for c in cells) + " |")
    return out


def aio_range(measured: Inputs) -> str:
    low, high = AIO_WITHOUT_STACK_MIB
    return (
        f"{(low + measured.sidecar_mib) / AIO_WITH_STACK_MIB:.2f}-"
        f"{(high + measured.sidecar_mib) / AIO_WITH_STACK_MIB:.2f} of its eager "
        f"{AIO_WITH_STACK_MIB:g} MiB, a saving of "
        f"{AIO_WITH_STACK_MIB - high - measured.sidecar_mib:.0f}-"
        f"{AIO_WITH_STACK_MIB - low - measured.sidecar_mib:.0f} MiB per pod"
    )


def headline(readme: str) -> str:
    """The saving and the AIO pod's capacity, for README.md and docs/aio-image.md."""
    measured = inputs(readme)
    aio = pods(measured)[1]
    n = AT_N[1]
    return "\n".join(
        [
            f"A lazy sandbox whose browser sleeps holds **{measured.stack_mib:.0f} MiB less** "
            f"than the same image eager (cgroup working set, idle; {measured.lazy_mib:g} "
            f"against {measured.eager_mib:g} MiB), whatever else the image runs: "
            f"**{n * measured.stack_mib / 1024:.1f} GiB per node** at {n} sandboxes. On the "
            f"whole-pod baseline of agent-infra/sandbox issue 198 ({AIO_WITH_STACK_MIB:g} MiB "
            f"idle with the stack, {AIO_WITHOUT_STACK_MIB[0]:g}-{AIO_WITHOUT_STACK_MIB[1]:g} "
            f"without), a lazy AIO pod with the sidecar is {aio_range(measured)}. "
            "Sandboxes per node by idle memory, AIO pods, with a share of them holding a "
            "browser awake (n = floor(node MiB / per-pod MiB); inputs, formula and the "
            "stack's own share: [bench/README.md](bench/README.md#capacity-per-node-issue-21)):",
            "",
            *table(aio),
        ]
    )


def render(readme: str) -> str:
    measured = inputs(readme)
    out = [
        "Inputs, per sandbox, idle, cgroup working set: a lazy sandbox "
        f"L = {measured.lazy_mib:g} MiB, the same image eager E = {measured.eager_mib:g} MiB "
        f"(the podman fleet at N = 10 above); the sidecar {measured.sidecar_mib:g} MiB PSS "
        "in a lazy container (above). Saving per sandbox with its browser asleep: "
        f"S = E - L = **{measured.stack_mib:.1f} MiB**, whatever else the image runs.",
        "",
        "| saving per node, all asleep | " + " | ".join(f"N = {n}" for n in AT_N) + " |",
        "|---" + "|--:" * len(AT_N) + "|",
        "| N x S | " + " | ".join(f"{n * measured.stack_mib / 1024:.1f} GiB" for n in AT_N) + " |",
        "",
        "Sandboxes per node: n = floor(A / m), A = the node's memory in MiB (before what "
        "the kubelet and the system reserve: subtract yours), m = per-sandbox memory; eager "
        "m = E, lazy m = asleep + p x (awake - asleep), p = the share of sandboxes with a "
        "browser awake. Memory alone: a node's pod limit (110 by default in Kubernetes) "
        "and its CPU (bench/README.md: what breaks when many browsers start at once) cap "
        "the larger counts first.",
    ]
    for pod in pods(measured):
        ratio = pod.asleep_mib / pod.eager_mib
        out += [
            "",
            f"{pod.name[0].upper()}{pod.name[1:]}: eager {pod.eager_mib:g} MiB, lazy asleep "
            f"{pod.asleep_mib:g} MiB, awake {pod.awake_mib:g} MiB (asleep / eager "
            f"{ratio:.2f}, only on this baseline):",
            "",
            *table(pod),
        ]
    low, high = AIO_WITHOUT_STACK_MIB
    out += [
        "",
        f"On issue 198's own range ({low:g}-{high:g} MiB without the stack), an AIO pod "
        f"asleep with the sidecar is {aio_range(measured)}.",
    ]
    return "\n".join(out)


def with_block(text: str, markers: tuple[str, str], block: str, where: str) -> str:
    """`text` with `block` between its markers."""
    begin, end = markers
    before, found_begin, rest = text.partition(begin)
    _old, found_end, after = rest.partition(end)
    if not found_begin or not found_end:
        raise SystemExit(f"capacity.py: {where} has no {begin} ... {end} block")
    return f"{before}{begin}\n{block}\n{end}{after}"


def updated(repo: Path = REPO) -> dict[str, str]:
    """Each file of BLOCKS as it should read."""
    readme = (repo / "bench" / "README.md").read_text(encoding="utf-8")
    out = {}
    for name, markers in BLOCKS.items():
        block = render(readme) if markers == FULL else headline(readme)
        # links are written from the repository's top; docs/ is one below
        block = block.replace("](bench/", "](" + "../" * name.count("/") + "bench/")
        text = (repo / name).read_text(encoding="utf-8")
        out[name] = with_block(text, markers, block, name)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="put the tables into the docs")
    args = parser.parse_args(argv)
    print(render(README.read_text(encoding="utf-8")))
    if args.write:
        for name, text in updated().items():
            (REPO / name).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
