"""The switches a deployment sets, by name and word: defined once.

The opt-in switch goes by three names: LAZY_START_BROWSER_STACK=true, the name the
AIO sandbox's maintainers proposed for lazy start (agent-infra/sandbox issue 198),
and this project's older DISABLE_BROWSER_STACK=true and AUTOSTART_BROWSER_STACK=false.
The image's own off switches (DISABLE_BROWSER, DISABLE_MCP_BROWSER, DISABLE_VNC)
keep parts of the stack stopped for good; which programs each covers is in stack.py.

bin/browser-stack-entrypoint reads the same names and words in shell:
tests/image/test_entrypoint.py runs it on every combination and checks that it agrees
with this module. The sidecar's config, doctor/boot.py (what supervisord boots with) and
the doctor read them from here. Standard library only.
"""

from __future__ import annotations

from collections.abc import Mapping

from browser_stack.errors import ConfigError

# How a true/false variable may be written, in any case; empty counts as unset.
TRUE_WORDS = ("true", "1", "yes")
FALSE_WORDS = ("false", "0", "no")

LAZY_START = "LAZY_START_BROWSER_STACK"
DISABLE = "DISABLE_BROWSER_STACK"
AUTOSTART = "AUTOSTART_BROWSER_STACK"
# Each name of the switch, and the value of it that means lazy.
SWITCHES: dict[str, bool] = {LAZY_START: True, DISABLE: True, AUTOSTART: False}

# An image's default, for a container that sets none of the switches.
DEFAULT = "BROWSER_STACK_DEFAULT"
DEFAULT_WORDS = ("eager", "lazy")

# The AIO image's own switches, which its run.sh turns into the AUTOSTART_* its
# program files read. The entrypoint's --aio mode sets all three to start nothing at
# boot; what the deployment had set before it did goes on to the sidecar in
# DEPLOYMENT_DISABLED (comma-separated names), and what they cover is never started.
IMAGE_SWITCHES = ("DISABLE_BROWSER", "DISABLE_MCP_BROWSER", "DISABLE_VNC")
DEPLOYMENT_DISABLED = "BROWSER_STACK_DEPLOYMENT_DISABLED"


def switch(name: str, env: Mapping[str, str]) -> bool | None:
    """One true/false variable as the entrypoint reads it: True, False or None
    (unset or empty); anything else is an error."""
    value = env.get(name, "")
    lower = value.lower()
    if not lower:
        return None
    if lower in TRUE_WORDS:
        return True
    if lower in FALSE_WORDS:
        return False
    raise ConfigError(
        f"invalid {name}={value!r} (expected true/1/yes or false/0/no)", variable=name
    )


def _default(env: Mapping[str, str]) -> str:
    default = env.get(DEFAULT, "").lower()
    if default not in ("", *DEFAULT_WORDS):
        raise ConfigError(
            f"invalid {DEFAULT}={env[DEFAULT]!r} (expected lazy or eager)", variable=DEFAULT
        )
    return default


def lazy_by_default(env: Mapping[str, str]) -> bool:
    """Whether the image's BROWSER_STACK_DEFAULT=lazy applies: no switch set."""
    default = _default(env)
    return default == "lazy" and all(switch(name, env) is None for name in SWITCHES)


def is_lazy(env: Mapping[str, str]) -> bool:
    """Whether the five stay stopped at boot: any name of the switch says lazy, or
    none is set in an image whose BROWSER_STACK_DEFAULT is lazy."""
    said = [switch(name, env) == lazy for name, lazy in SWITCHES.items()]
    return any(said) or lazy_by_default(env)


def describe(env: Mapping[str, str]) -> str:
    """The switch as an operator set it, for messages and status."""
    set_ = [f"{name}={env[name]}" for name in SWITCHES if env.get(name)]
    if set_:
        return ", ".join(set_)
    if lazy_by_default(env):
        return f"{DEFAULT}=lazy"
    return "no switch set"


def image_switch_on(value: str) -> bool:
    """An image switch as run.sh is assumed to read it: on when a true word."""
    return value.lower() in TRUE_WORDS


def own_disabled(env: Mapping[str, str]) -> tuple[str, ...]:
    """The image switches the deployment itself turned on: what the entrypoint
    passes on in DEPLOYMENT_DISABLED before the switch sets all three."""
    return tuple(name for name in IMAGE_SWITCHES if image_switch_on(env.get(name, "")))


def deployment_disabled(env: Mapping[str, str]) -> tuple[str, ...]:
    """DEPLOYMENT_DISABLED as the sidecar reads it: image switch names, comma or
    space separated, in IMAGE_SWITCHES' order. Unset: none."""
    value = env.get(DEPLOYMENT_DISABLED, "")
    names = set(value.replace(",", " ").split())
    unknown = sorted(names - set(IMAGE_SWITCHES))
    if unknown:
        raise ConfigError(
            f"{DEPLOYMENT_DISABLED}={value!r}: {', '.join(unknown)} is not one of "
            f"{', '.join(IMAGE_SWITCHES)}",
            variable=DEPLOYMENT_DISABLED,
        )
    return tuple(name for name in IMAGE_SWITCHES if name in names)
