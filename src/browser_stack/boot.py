"""The environment supervisord boots with: what bin/browser-stack-entrypoint
passes on, and what the AIO image's run.sh makes of it.

The entrypoint script is the definition. This is the part the doctor needs to
read supervisord's files as they will be read at boot (the switch, the
variables the program files expand, WAIT_PORTS), and tests/test_boot.py runs
the script and this on the same environments and compares what they export.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from browser_stack.config import FALSE_WORDS, TRUE_WORDS
from browser_stack.errors import ConfigError

# What run.sh waits for when the entrypoint leaves nothing else in WAIT_PORTS.
DEFAULT_AIO_WAIT_PORTS = "8079,8091"
# The AIO image's own switches, which the entrypoint's --aio mode turns on.
IMAGE_SWITCHES = ("DISABLE_BROWSER", "DISABLE_MCP_BROWSER", "DISABLE_VNC")
# run.sh turns each image switch into the AUTOSTART_* its program files read
# (docs/aio-image.md: known from a derived image, not from the image's files): the
# browser stack's, and those of the image's other idle services, whose program files
# the doctor reads too (without them their files are unreadable at build time).
RUN_SH_AUTOSTART = {
    "AUTOSTART_BROWSER": "DISABLE_BROWSER",
    "AUTOSTART_MCP_BROWSER": "DISABLE_MCP_BROWSER",
    "AUTOSTART_VNC": "DISABLE_VNC",
    "AUTOSTART_JUPYTER": "DISABLE_JUPYTER",
    "AUTOSTART_CODE_SERVER": "DISABLE_CODE_SERVER",
}
# The public port variables, their defaults and the internal port behind the
# activation proxy, in the entrypoint's order.
PORTS = (
    ("VNC_SERVER_PORT", "5900", "VNC"),
    ("BROWSER_REMOTE_DEBUGGING_PORT", "9222", "CDP"),
    ("MCP_SERVER_BROWSER_PORT", "8100", "MCP"),
    ("WEBSOCKET_PROXY_PORT", "6080", "WS"),
)
_DISPLAY_RE = re.compile(r"^.*:(?P<number>[0-9]+)(?:\..*)?$")
# What browser-stack-entrypoint creates (mkdir -p) before supervisord starts.
CREATED_DIRS = ("BROWSER_STACK_PROFILE_DIR", "BROWSER_STACK_LOG_DIR")
DEFAULTS = {
    "DISPLAY": ":99",
    "BROWSER_STACK_PROFILE_DIR": "/var/lib/browser-stack/profile",
    "BROWSER_STACK_LOG_DIR": "/var/log/browser-stack",
}


def switch(name: str, env: Mapping[str, str]) -> bool | None:
    """One switch as the entrypoint reads it: True, False or None (unset/empty)."""
    value = env.get(name, "")
    lower = value.lower()
    if not lower:
        return None
    if lower in TRUE_WORDS:
        return True
    if lower in FALSE_WORDS:
        return False
    raise ConfigError(f"invalid {name}={value!r} (expected true/1/yes or false/0/no)")


def lazy_by_default(env: Mapping[str, str]) -> bool:
    """Whether the image's BROWSER_STACK_DEFAULT=lazy applies: neither switch set."""
    default = env.get("BROWSER_STACK_DEFAULT", "").lower()
    if default not in ("", "eager", "lazy"):
        raise ConfigError(
            f"invalid BROWSER_STACK_DEFAULT={env['BROWSER_STACK_DEFAULT']!r} "
            "(expected lazy or eager)"
        )
    unset = (None, None)
    switches = (switch("DISABLE_BROWSER_STACK", env), switch("AUTOSTART_BROWSER_STACK", env))
    return default == "lazy" and switches == unset


def is_lazy(env: Mapping[str, str]) -> bool:
    """Whether the five stay stopped at boot: DISABLE_BROWSER_STACK=true or
    AUTOSTART_BROWSER_STACK=false, or neither set in an image whose
    BROWSER_STACK_DEFAULT is lazy."""
    disable = switch("DISABLE_BROWSER_STACK", env)
    autostart = switch("AUTOSTART_BROWSER_STACK", env)
    return disable is True or autostart is False or lazy_by_default(env)


def describe_switch(env: Mapping[str, str]) -> str:
    """The switch as an operator set it, for messages."""
    set_ = [
        f"{name}={env[name]}"
        for name in ("DISABLE_BROWSER_STACK", "AUTOSTART_BROWSER_STACK")
        if env.get(name)
    ]
    return ", ".join(set_) or "neither DISABLE_BROWSER_STACK nor AUTOSTART_BROWSER_STACK set"


def check_port(name: str, value: str) -> None:
    if not re.fullmatch("[0-9]{1,5}", value) or not 1 <= int(value) <= 65535:
        raise ConfigError(f"invalid {name}={value!r} (expected a port number 1-65535)")


def wait_port_entries(value: str) -> list[str]:
    """WAIT_PORTS' entries ("port" or "host:port", comma or space separated)."""
    return [entry for entry in value.replace(",", " ").split() if entry]


def entry_port(entry: str) -> str:
    return entry.rsplit(":", 1)[-1]


def without_ports(value: str, ports: Iterable[str]) -> str:
    drop = set(ports)
    return ",".join(e for e in wait_port_entries(value) if entry_port(e) not in drop)


def boot_environment(env: Mapping[str, str]) -> dict[str, str]:
    """`env` as supervisord gets it when the container boots through the
    entrypoint (either mode: their variables do not overlap) and run.sh.

    Raises ConfigError where the entrypoint would exit 2.
    """
    out = dict(env)
    lazy = is_lazy(env)
    if lazy_by_default(env):
        out["DISABLE_BROWSER_STACK"] = "true"

    def text(name: str, default: str) -> str:
        return env.get(name, "") or default

    public = {}
    for name, default, _kind in PORTS:
        value = text(name, default)
        check_port(name, value)
        public[name] = value
    # --aio: the image's switches and WAIT_PORTS.
    if lazy:
        out.update(dict.fromkeys(IMAGE_SWITCHES, "true"))
        kept = without_ports(env.get("WAIT_PORTS", ""), public.values())
        out["WAIT_PORTS"] = kept or text("BROWSER_STACK_AIO_WAIT_PORTS", DEFAULT_AIO_WAIT_PORTS)
    # Standalone: the variables supervisord.d/browser-stack-programs.conf reads.
    out["AUTOSTART_BROWSER_STACK"] = "false" if lazy else "true"
    for name, default in DEFAULTS.items():
        out[name] = text(name, default)
    out.update(public)
    if not env.get("BROWSER_STACK_X_DISPLAY"):
        # "[host]:N[.screen]" -> ":N"
        match = _DISPLAY_RE.match(out["DISPLAY"])
        if match is None:
            raise ConfigError(f"invalid DISPLAY={out['DISPLAY']!r} (expected :N or :N.S)")
        out["BROWSER_STACK_X_DISPLAY"] = f":{match['number']}"
    activation = text("BROWSER_STACK_ACTIVATION", "off").lower()
    if activation not in ("off", "proxy"):
        raise ConfigError(
            f"invalid BROWSER_STACK_ACTIVATION={env.get('BROWSER_STACK_ACTIVATION')!r} "
            "(expected off or proxy)"
        )
    for name, _default, kind in PORTS:
        program = public[name]
        if activation == "proxy":
            program = text(f"BROWSER_STACK_INTERNAL_{kind}_PORT", str(int(public[name]) + 10000))
        check_port(f"BROWSER_STACK_PROGRAM_{kind}_PORT", program)
        out[f"BROWSER_STACK_PROGRAM_{kind}_PORT"] = program
    # run.sh: each image switch to the AUTOSTART_* its program files read.
    for autostart, disable in RUN_SH_AUTOSTART.items():
        if not out.get(autostart):
            out[autostart] = "false" if out.get(disable, "").lower() in TRUE_WORDS else "true"
    return out


def created_directories(boot_env: Mapping[str, str]) -> list[str]:
    """The directories the entrypoint makes, as `boot_environment` names them."""
    return [boot_env[name] for name in CREATED_DIRS if boot_env.get(name)]
