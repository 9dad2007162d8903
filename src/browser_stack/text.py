"""Plain-text views for people reading a terminal (curl, the CLI)."""

from __future__ import annotations

from typing import Any

MIB = 1024 * 1024


def _uptime(seconds: int) -> str:
    hours, rest = divmod(int(seconds), 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02}:{secs:02}"


def status_table(payload: dict[str, Any]) -> str:
    """Like `supervisorctl status`, with readiness and, when measured, memory."""
    memory = payload.get("memory") or {}
    lines = []
    for name, program in payload["programs"].items():
        where = (
            f"pid {program['pid']}, uptime {_uptime(program['uptime_s'])}" if program["pid"] else ""
        )
        ready = "ready" if program["ready"] else "not ready"
        if program.get("disabled_by"):
            ready = "disabled"
            where = where or f"by {program['disabled_by']}"
        line = f"{name:<20} {program['state']:<14} {where:<28} {ready:<9}"
        tree = memory.get(name)
        if tree and tree["processes"]:
            line += (
                f" {tree['processes']:>2} proc  USS {tree['uss_bytes'] / MIB:6.1f} MiB"
                f"  PSS {tree['pss_bytes'] / MIB:6.1f} MiB"
            )
        lines.append(line.rstrip())
        for key, value in (program.get("reason") or {}).items():
            if value:
                lines.extend(f"    {key}: {text}" for text in str(value).strip().splitlines()[-3:])
    for name, failing in (payload.get("backoff") or {}).items():
        lines.append(
            f"{name}: failed {failing['failures']} time(s) in a row; "
            f"next background start in {failing['retry_in_s']:.0f} s or on an ensure that needs it"
        )
    mode = payload.get("mode")
    if mode:
        lines.append(f"mode: {'lazy' if mode['lazy'] else 'eager'} ({mode['switch']})")
    idle = payload.get("idle")
    if idle:
        lines.append(idle_line(idle))
    return "\n".join(lines) + "\n"


def idle_line(idle: dict[str, Any]) -> str:
    source = f" ({idle['timeout_source']})" if idle.get("timeout_source") else ""
    if not idle.get("enabled"):
        return f"idle stop: off{source}"
    parts = [f"after {idle['timeout_s']:g} s{source}", f"idle {idle['idle_for_s']:.0f} s"]
    if idle.get("stops_in_s") is not None:
        parts.append(f"stops in {idle['stops_in_s']:.0f} s")
    if idle.get("held_by"):
        parts.append("held by " + ", ".join(idle["held_by"]))
    return "idle stop: " + "; ".join(parts)
