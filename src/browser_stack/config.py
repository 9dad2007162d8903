"""Settings, built once from the environment and validated in one place.

Variable names follow the AIO image (DISPLAY, VNC_SERVER_PORT,
BROWSER_REMOTE_DEBUGGING_PORT, MCP_SERVER_BROWSER_PORT, WEBSOCKET_PROXY_PORT,
SUPERVISOR_SERVER_URL) and supervisor's own childutils (SUPERVISOR_USERNAME,
SUPERVISOR_PASSWORD); the sidecar's own start with BROWSER_STACK_.
"""

from __future__ import annotations

import ipaddress
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field

from browser_stack import switches
from browser_stack.errors import ConfigError
from browser_stack.stack import (
    DEFAULT_DISPLAY,
    DISABLED_BY,
    PORT_BY_NAME,
    PORTS,
    X11_SOCKET_DIR,
    Port,
    Program,
    split_display,
)
from browser_stack.switches import FALSE_WORDS, TRUE_WORDS

DEFAULT_SUPERVISOR_URL = "unix:///var/run/supervisor.sock"
DEFAULT_LISTEN = "127.0.0.1:8110"
# The longest an ensure may wait, whether the default (BROWSER_STACK_ENSURE_TIMEOUT)
# or a request's timeout_s: one limit for both, under the gateway's read timeout
# (deploy/nginx/browser-stack.conf, 310 s).
MAX_ENSURE_TIMEOUT_S = 300.0
MAX_TIMEOUT_S = 600.0
# Behind the activation proxy, a program's port by default: the public one + this.
INTERNAL_OFFSET = 10000
# Idle stop in lazy mode unless BROWSER_STACK_IDLE_TIMEOUT says otherwise (0: off).
# Half of DeerFlow's warm-pool reuse window (its sandbox idle_timeout, 600 s): a
# released sandbox that used the browser gives its memory back halfway through the
# time it waits for reuse, not only when it is destroyed; five minutes is long
# against the gaps between one task's browser calls, and the start it may cost
# again is short (docs/configuration.md, "Idle stop", and bench/README.md for the figures).
LAZY_IDLE_TIMEOUT_S = 300.0
# Where the idle timeout came from, for status and the doctor.
IDLE_SET = "BROWSER_STACK_IDLE_TIMEOUT"
IDLE_LAZY_DEFAULT = "lazy mode's default"
IDLE_EAGER_DEFAULT = "eager mode's default"
MAX_IDLE_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class ListenAddress:
    host: str | None = None
    port: int | None = None
    path: str | None = None

    @property
    def is_unix(self) -> bool:
        return self.path is not None

    @property
    def is_loopback(self) -> bool:
        if self.path is not None:
            return True
        assert self.host is not None
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


@dataclass(frozen=True)
class Settings:
    supervisor_url: str = DEFAULT_SUPERVISOR_URL
    supervisor_username: str | None = None
    supervisor_password: str | None = field(default=None, repr=False)
    listen: ListenAddress = field(default_factory=lambda: parse_listen(DEFAULT_LISTEN))
    token: str | None = field(default=None, repr=False)
    display: str = DEFAULT_DISPLAY
    x11_socket_dir: str = X11_SOCKET_DIR
    # The four ports' fields are stack.PORTS' `setting` and `internal_setting`.
    vnc_port: int = PORT_BY_NAME["vnc"].default
    cdp_port: int = PORT_BY_NAME["cdp"].default
    mcp_port: int = PORT_BY_NAME["mcp"].default
    websocket_port: int = PORT_BY_NAME["vnc_ws"].default
    public_host: str = "127.0.0.1"
    ensure_timeout_s: float = 30.0
    stop_timeout_s: float = 30.0
    ready_grace_s: float = 20.0
    probe_interval_s: float = 0.005
    # Between liveness checks of what is up; 0: none (events alone).
    liveness_interval_s: float = 2.0
    # needed: an ensure starts what its gates need and no more; all: the rest
    # of the stack follows in the background (BROWSER_STACK_START).
    start: str = "all"
    state_interval_s: float = 0.05
    xprop: str = ""
    # proxy: the sidecar listens on the public ports above and the programs on
    # the internal ones (BROWSER_STACK_ACTIVATION, BROWSER_STACK_INTERNAL_*_PORT).
    activation: str = "off"
    proxy_host: str = "127.0.0.1"
    internal_cdp_port: int = PORT_BY_NAME["cdp"].default + INTERNAL_OFFSET
    internal_mcp_port: int = PORT_BY_NAME["mcp"].default + INTERNAL_OFFSET
    internal_vnc_port: int = PORT_BY_NAME["vnc"].default + INTERNAL_OFFSET
    internal_websocket_port: int = PORT_BY_NAME["vnc_ws"].default + INTERNAL_OFFSET
    idle_timeout_s: float = 0.0
    idle_timeout_source: str = IDLE_EAGER_DEFAULT
    idle_min_uptime_s: float = 60.0
    # Whether the five stay stopped at boot (the switch), and how it was set.
    lazy: bool = False
    switch: str = "no switch set"
    # The deployment's own image switches that are on (BROWSER_STACK_DEPLOYMENT_DISABLED):
    # what they cover is never started.
    disabled_by: tuple[str, ...] = ()
    log_format: str = "text"
    log_level: str = "INFO"

    @property
    def public_ports(self) -> dict[str, int]:
        """Where clients connect (the AIO variables), by port name."""
        return {p.name: getattr(self, p.setting) for p in PORTS}

    @property
    def internal_ports(self) -> dict[str, int]:
        """Where the programs listen behind the activation proxy, by port name."""
        return {p.name: getattr(self, p.internal_setting) for p in PORTS}

    @property
    def program_ports(self) -> dict[str, int]:
        """Where the programs listen: the public ports, or with the activation
        proxy in front of them, the internal ones."""
        return self.internal_ports if self.activation == "proxy" else self.public_ports

    @property
    def disabled(self) -> dict[Program, str]:
        """Each program the deployment turned off, and the variable that did."""
        return {p: name for name in self.disabled_by for p in DISABLED_BY[name]}

    @property
    def display_number(self) -> int:
        return parse_display(self.display)

    @property
    def x11_socket(self) -> str:
        return f"{self.x11_socket_dir}/X{self.display_number}"

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        def text(name: str, default: str) -> str:
            value = env.get(name, "").strip()
            return value or default

        def optional(name: str) -> str | None:
            value = env.get(name, "")
            return value or None

        activation = text("BROWSER_STACK_ACTIVATION", "off").lower()
        proxy = activation == "proxy"
        lazy = switches.is_lazy(env)
        idle_text = env.get(IDLE_SET, "").strip()
        if idle_text:
            idle_source = IDLE_SET
        else:
            idle_source = IDLE_LAZY_DEFAULT if lazy else IDLE_EAGER_DEFAULT
            idle_text = f"{LAZY_IDLE_TIMEOUT_S:g}" if lazy else "0"
        ports: dict[str, int] = {}
        for port in PORTS:
            ports[port.setting] = parse_port(port.variable, text(port.variable, str(port.default)))
            ports[port.internal_setting] = internal_port(env, port, proxy)
        settings = cls(
            supervisor_url=parse_supervisor_url(
                text("SUPERVISOR_SERVER_URL", DEFAULT_SUPERVISOR_URL)
            ),
            supervisor_username=optional("SUPERVISOR_USERNAME"),
            supervisor_password=optional("SUPERVISOR_PASSWORD"),
            listen=parse_listen(text("BROWSER_STACK_LISTEN", DEFAULT_LISTEN)),
            token=optional("BROWSER_STACK_TOKEN"),
            display=text("DISPLAY", DEFAULT_DISPLAY),
            x11_socket_dir=text("BROWSER_STACK_X11_DIR", X11_SOCKET_DIR),
            public_host=text("BROWSER_STACK_PUBLIC_HOST", "127.0.0.1"),
            ensure_timeout_s=parse_seconds(
                "BROWSER_STACK_ENSURE_TIMEOUT",
                text("BROWSER_STACK_ENSURE_TIMEOUT", "30"),
                limit=MAX_ENSURE_TIMEOUT_S,
            ),
            stop_timeout_s=parse_seconds(
                "BROWSER_STACK_STOP_TIMEOUT", text("BROWSER_STACK_STOP_TIMEOUT", "30")
            ),
            ready_grace_s=parse_seconds(
                "BROWSER_STACK_READY_GRACE", text("BROWSER_STACK_READY_GRACE", "20")
            ),
            probe_interval_s=parse_seconds(
                "BROWSER_STACK_PROBE_INTERVAL", text("BROWSER_STACK_PROBE_INTERVAL", "0.005")
            ),
            start=text("BROWSER_STACK_START", "all").lower(),
            liveness_interval_s=parse_seconds(
                "BROWSER_STACK_LIVENESS_INTERVAL",
                text("BROWSER_STACK_LIVENESS_INTERVAL", "2"),
                zero_ok=True,
                limit=MAX_TIMEOUT_S,
            ),
            xprop=parse_xprop(text("BROWSER_STACK_XPROP", "")),
            activation=activation,
            proxy_host=text("BROWSER_STACK_PROXY_HOST", "127.0.0.1"),
            idle_timeout_s=parse_seconds(IDLE_SET, idle_text, zero_ok=True),
            idle_timeout_source=idle_source,
            idle_min_uptime_s=parse_seconds(
                "BROWSER_STACK_IDLE_MIN_UPTIME",
                text("BROWSER_STACK_IDLE_MIN_UPTIME", "60"),
                zero_ok=True,
            ),
            log_format=text("BROWSER_STACK_LOG_FORMAT", "text").lower(),
            log_level=text("BROWSER_STACK_LOG_LEVEL", "INFO").upper(),
            lazy=lazy,
            switch=switches.describe(env),
            disabled_by=switches.deployment_disabled(env),
            **ports,
        )
        settings.validate()
        return settings

    def validate(self) -> None:
        parse_display(self.display)
        if self.log_format not in ("text", "json"):
            raise ConfigError(
                f"BROWSER_STACK_LOG_FORMAT={self.log_format!r} must be text or json",
                variable="BROWSER_STACK_LOG_FORMAT",
            )
        if self.log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
            raise ConfigError(
                f"BROWSER_STACK_LOG_LEVEL={self.log_level!r} must be DEBUG, INFO, WARNING or ERROR",
                variable="BROWSER_STACK_LOG_LEVEL",
            )
        if not self.listen.is_loopback and not self.token:
            raise ConfigError(
                f"BROWSER_STACK_LISTEN={self.listen} is not a loopback address; "
                "set BROWSER_STACK_TOKEN to expose the sidecar beyond this machine",
                variable="BROWSER_STACK_LISTEN",
            )
        if (self.supervisor_username is None) != (self.supervisor_password is None):
            raise ConfigError(
                "set both SUPERVISOR_USERNAME and SUPERVISOR_PASSWORD, or neither",
                variable="SUPERVISOR_USERNAME"
                if self.supervisor_username
                else "SUPERVISOR_PASSWORD",
            )
        if self.start not in ("needed", "all"):
            raise ConfigError(
                f"BROWSER_STACK_START={self.start!r} must be needed or all",
                variable="BROWSER_STACK_START",
            )
        if self.activation not in ("off", "proxy"):
            raise ConfigError(
                f"BROWSER_STACK_ACTIVATION={self.activation!r} must be off or proxy",
                variable="BROWSER_STACK_ACTIVATION",
            )
        public, internal = self.public_ports, self.internal_ports
        ports = {p.variable: public[p.name] for p in PORTS}
        if self.activation == "proxy":
            ports.update({p.internal_variable: internal[p.name] for p in PORTS})
        seen: dict[int, str] = {}
        for name, port in ports.items():
            if port in seen:
                raise ConfigError(f"{name} and {seen[port]} are both {port}", variable=name)
            seen[port] = name
        if self.listen.port is not None and self.listen.port in seen:
            raise ConfigError(
                f"BROWSER_STACK_LISTEN={self.listen} takes port {self.listen.port}, "
                f"which is {seen[self.listen.port]}: the sidecar needs a port of its own",
                variable="BROWSER_STACK_LISTEN",
            )


def internal_port(env: Mapping[str, str], port: Port, proxy: bool) -> int:
    """BROWSER_STACK_INTERNAL_<kind>_PORT, by default the public port + 10000
    (the entrypoint computes the same for the programs' files).

    Only the activation proxy uses these ports. Without it a set value is still
    checked (bad input is an error wherever it is), but the default is not
    derived: a public port above 55535 has no +10000 and needs none."""
    name, public_var = port.internal_variable, port.variable
    value = env.get(name, "").strip()
    if value:
        return parse_port(name, value)
    public = parse_port(public_var, env.get(public_var, "").strip() or str(port.default))
    derived = public + INTERNAL_OFFSET
    if derived <= 65535:
        return derived
    if proxy:
        raise ConfigError(
            f"{public_var}={public} leaves no room for the default internal port "
            f"(public + 10000); set {name} for BROWSER_STACK_ACTIVATION=proxy",
            variable=name,
        )
    return 0  # unused without the proxy


def parse_display(value: str) -> int:
    """The display number of a local DISPLAY (":N[.S]" or "unix:N[.S]")."""
    split = split_display(value)
    if split is None:
        raise ConfigError(
            f"DISPLAY={value!r} is not an X display like ':99' or ':99.0'", variable="DISPLAY"
        )
    host, number = split
    if host not in ("", "unix"):
        raise ConfigError(
            f"DISPLAY={value!r}: only a local display is supported", variable="DISPLAY"
        )
    return number


def parse_port(name: str, value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a port number", variable=name) from None
    if not 1 <= port <= 65535:
        raise ConfigError(
            f"{name}={value!r} is not a port number between 1 and 65535", variable=name
        )
    return port


def parse_seconds(name: str, value: str, *, zero_ok: bool = False, limit: float = 0) -> float:
    limit = limit or (MAX_IDLE_S if zero_ok else MAX_TIMEOUT_S)
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"{name}={value!r} is not a number of seconds", variable=name) from None
    low_ok = seconds >= 0 if zero_ok else seconds > 0
    if not low_ok or not seconds <= limit:
        low = "0 or more" if zero_ok else "more than 0"
        raise ConfigError(f"{name}={value!r} must be {low} and at most {limit:g}", variable=name)
    return seconds


def parse_listen(value: str) -> ListenAddress:
    if value.startswith("unix:"):
        path = value.removeprefix("unix:")
        if not path.startswith("/"):
            raise ConfigError(
                f"BROWSER_STACK_LISTEN={value!r}: a unix socket needs an absolute path",
                variable="BROWSER_STACK_LISTEN",
            )
        return ListenAddress(path=path)
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ConfigError(
            f"BROWSER_STACK_LISTEN={value!r} is not host:port or unix:/path",
            variable="BROWSER_STACK_LISTEN",
        )
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = parse_port("BROWSER_STACK_LISTEN", port_text)
    except ConfigError:
        raise ConfigError(
            f"BROWSER_STACK_LISTEN={value!r}: {port_text!r} is not a port number between "
            "1 and 65535",
            variable="BROWSER_STACK_LISTEN",
        ) from None
    return ListenAddress(host=host, port=port)


def parse_supervisor_url(value: str) -> str:
    if value.startswith("unix://"):
        if not value.removeprefix("unix://").startswith("/"):
            raise ConfigError(
                f"SUPERVISOR_SERVER_URL={value!r}: unix:// needs an absolute path",
                variable="SUPERVISOR_SERVER_URL",
            )
        return value
    if value.startswith(("http://", "https://")):
        try:
            parts = urllib.parse.urlsplit(value)
            parts.port  # noqa: B018 - raises ValueError for a port that is not one
        except ValueError as exc:
            raise ConfigError(
                f"SUPERVISOR_SERVER_URL={value!r}: {exc}", variable="SUPERVISOR_SERVER_URL"
            ) from None
        if not parts.hostname:
            raise ConfigError(
                f"SUPERVISOR_SERVER_URL={value!r} names no host", variable="SUPERVISOR_SERVER_URL"
            )
        return value.rstrip("/")
    raise ConfigError(
        f"SUPERVISOR_SERVER_URL={value!r} must start with unix:// or http://",
        variable="SUPERVISOR_SERVER_URL",
    )


def parse_xprop(value: str) -> str:
    """BROWSER_STACK_XPROP: the xprop command to ask instead of the built-in X11
    check; true/1/yes means `xprop` on PATH, false/0/no or empty the built-in check."""
    if value.lower() in TRUE_WORDS:
        return "xprop"
    if value.lower() in FALSE_WORDS:
        return ""
    return value
