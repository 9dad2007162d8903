"""One cold ensure drawn from the logs: when the sidecar asked supervisord for each
program, when supervisord said RUNNING, when its probe passed."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any

from browser_stack.stack import PROGRAMS
from browser_stack.states import ProcessState

from .private_stack import Bench

REPO = Path(__file__).resolve().parent.parent

_SUPERVISORD_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) \w+ "
    r"(?:spawned: '(?P<spawned>[\w-]+)'|success: (?P<running>[\w-]+) entered RUNNING)"
)


def log_time(text: str) -> float:
    """A logging asctime ("2025-01-02 03:04:05,678", local time) as a Unix time."""
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f").timestamp()


def read_events(root: Path, since: float) -> dict[str, dict[str, float]]:
    """Per program: asked/ready from the sidecar's JSON log, spawned/running from
    supervisord's log; Unix times, only events after `since` (minus log rounding)."""
    events: dict[str, dict[str, float]] = {str(p): {} for p in PROGRAMS}
    floor = since - 0.002
    for line in (root / "supervisord.log").read_text(errors="replace").splitlines():
        match = _SUPERVISORD_LINE.match(line)
        if match is None or log_time(match[1]) < floor:
            continue
        name = match["spawned"] or match["running"]
        if name in events:
            kind = "spawned" if match["spawned"] else "running"
            events[name].setdefault(kind, log_time(match[1]))
    for line in (root / "log" / "browser-stack.err.log").read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        name, event = record.get("program"), record.get("event")
        if name not in events or event not in ("start", "ready") or "asctime" not in record:
            continue
        when = log_time(record["asctime"])
        if when >= floor:
            events[name].setdefault("asked" if event == "start" else "ready", when)
    return events


async def section_timeline(bench: Bench, png: Path) -> dict[str, Any]:
    await bench.stop_stack()
    sent = time.time()
    answer = await bench.ensure()
    answered = time.time()
    # supervisord says RUNNING startsecs (1 s) after each spawn: wait for it.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        infos = await bench.supervisor.process_info()
        if all(i.state == ProcessState.RUNNING for i in infos.values()):
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)  # the log lines are written after the state changes
    events = read_events(bench.root, sent)
    rel = {
        program: {k: round((v - sent) * 1000, 1) for k, v in e.items()}
        for program, e in events.items()
    }
    result = {
        "ensure_answered_ms": round((answered - sent) * 1000, 1),
        "sidecar_elapsed_ms": answer["elapsed_ms"],
        "events_ms": rel,
        "png": str(png.relative_to(REPO)) if png.is_relative_to(REPO) else str(png),
    }
    draw_timeline(result, png)
    return result


def no_plot_here() -> str:
    """Why no plot can be drawn here, "" when one can: matplotlib comes with the
    dev extras only. Asked before a run, so that a long run does not end in a
    traceback."""
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        return f"{exc.name or 'matplotlib'} is not installed (scripts/install-deps.sh --dev)"
    return ""


def draw_timeline(result: dict[str, Any], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    rows = [str(p) for p in PROGRAMS]
    fig, ax = plt.subplots(figsize=(9, 4.2), dpi=110)
    for y, program in enumerate(rows):
        e = result["events_ms"][program]
        if "spawned" in e and "ready" in e:
            ax.barh(y, e["ready"] - e["spawned"], left=e["spawned"], height=0.5, color="#4c72b0")
        if "spawned" in e and "running" in e:
            ax.plot([e["spawned"], e["running"]], [y, y], color="#999999", lw=1, zorder=0)
        for key, marker, color in (
            ("asked", "|", "black"),
            ("ready", "o", "#2ca02c"),
            ("running", "s", "#dd8452"),
        ):
            if key in e:
                ax.plot(e[key], y, marker=marker, color=color, ms=7, mew=2, ls="none")
    answered = result["ensure_answered_ms"]
    ax.axvline(answered, color="#c44e52", ls="--", lw=1.2)
    handles = [
        Patch(color="#4c72b0", label="spawned (supervisord) → probe passed"),
        Line2D([], [], marker="|", color="black", ls="none", mew=2, label="startProcess answered"),
        Line2D([], [], marker="o", color="#2ca02c", ls="none", label="probe passed"),
        Line2D([], [], marker="s", color="#dd8452", ls="none", label="supervisord: RUNNING"),
        Line2D([], [], color="#c44e52", ls="--", label=f"ensure answered ({answered:.0f} ms)"),
    ]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize=8)
    ax.set_xlim(left=0)
    ax.set_yticks(range(len(rows)), rows)
    ax.invert_yaxis()
    ax.set_xlabel("ms since POST /ensure was sent")
    ax.set_title("One cold ensure on the real stack (2-core Debian 12)", fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png)
    plt.close(fig)
