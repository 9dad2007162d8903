"""The environment supervisord boots with: what bin/browser-stack-entrypoint
passes on, and what the AIO image's run.sh makes of it.

The entrypoint script is the definition. This is the part the doctor needs to
read supervisord's files as they will be read at boot (the switch, the
variables the program files expand, WAIT_PORTS), and tests/image/test_boot.py runs
the script and this on the same environments and compares what they export.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from browser_stack.config import INTERNAL_OFFSET
from browser_stack.errors import ConfigError
from browser_stack.stack import DEFAULT_DISPLAY, PORTS, split_display
from browser_stack.switches import (
    DEPLOYMENT_DISABLED,
    DISABLE,
    IMAGE_SWITCHES,
    image_switch_on,
    is_lazy,
    lazy_by_default,
    own_disabled,
)

# What run.sh waits for when the entrypoint leaves nothing else in WAIT_PORTS.
DEFAULT_AIO_WAIT_PORTS = "8079,8091"
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
# What browser-stack-entrypoint creates (mkdir -p) before supervisord starts.
CREATED_DIRS = ("BROWSER_STACK_PROFILE_DIR", "BROWSER_STACK_LOG_DIR")
DEFAULTS = {
    "DISPLAY": DEFAULT_DISPLAY,
    "BROWSER_STACK_PROFILE_DIR": "/var/lib/browser-stack/profile",
    "BROWSER_STACK_LOG_DIR": "/var/log/browser-stack",
}


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
        out[DISABLE] = "true"

    def text(name: str, default: str) -> str:
        return env.get(name, "") or default

    public = {}
    for port in PORTS:
        value = text(port.variable, str(port.default))
        check_port(port.variable, value)
        public[port.variable] = value
    # --aio: what the deployment itself turned off, then the image's switches and
    # WAIT_PORTS.
    out[DEPLOYMENT_DISABLED] = ",".join(own_disabled(env))
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
        split = split_display(out["DISPLAY"])
        if split is None:
            raise ConfigError(f"invalid DISPLAY={out['DISPLAY']!r} (expected :N or :N.S)")
        out["BROWSER_STACK_X_DISPLAY"] = f":{split[1]}"
    activation = text("BROWSER_STACK_ACTIVATION", "off").lower()
    if activation not in ("off", "proxy"):
        raise ConfigError(
            f"invalid BROWSER_STACK_ACTIVATION={env.get('BROWSER_STACK_ACTIVATION')!r} "
            "(expected off or proxy)"
        )
    for port in PORTS:
        program = public[port.variable]
        if activation == "proxy":
            derived = int(public[port.variable]) + INTERNAL_OFFSET
            program = text(port.internal_variable, str(derived))
        check_port(port.program_variable, program)
        out[port.program_variable] = program
    # run.sh: each image switch to the AUTOSTART_* its program files read.
    for autostart, disable in RUN_SH_AUTOSTART.items():
        if not out.get(autostart):
            out[autostart] = "false" if image_switch_on(out.get(disable, "")) else "true"
    return out


def created_directories(boot_env: Mapping[str, str]) -> list[str]:
    """The directories the entrypoint makes, as `boot_environment` names them."""
    return [boot_env[name] for name in CREATED_DIRS if boot_env.get(name)]
