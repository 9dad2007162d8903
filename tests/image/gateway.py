"""A real nginx (Debian's package) laid out like the AIO image's gateway, for tests.

It includes the shipped deploy/nginx/browser-stack.conf in its server block (with
the sidecar's address put in place of the default 127.0.0.1:8110), and stands in
for the image's own browser locations (whose files are not public) with plain
proxies that include the shipped gate-*.conf the way docs/aio-image.md says:

    /cdp/         -> CDP (prefix stripped)     gate cdp
    /devtools/    -> CDP websockets            gate cdp
    /websockify   -> websocat (noVNC)          gate vnc
    /sse, /message -> mcp-server-browser (SSE) gate mcp
    /v1/shell/    -> a route that is not gated
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..helpers import free_port

REPO = Path(__file__).resolve().parents[2]
NGINX_DIR = REPO / "deploy" / "nginx"
SHIPPED_SIDECAR = "127.0.0.1:8110"
GATES = ("cdp", "mcp", "vnc")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None
    )


def _env_port(name: str, default: int) -> int:
    # The e2e stack's programs listen where the AIO variables say.
    return int(os.environ.get(name) or default)


@dataclass(frozen=True)
class Upstreams:
    sidecar: str  # host:port of the sidecar
    cdp: int = field(default_factory=lambda: _env_port("BROWSER_REMOTE_DEBUGGING_PORT", 9222))
    vnc_ws: int = field(default_factory=lambda: _env_port("WEBSOCKET_PROXY_PORT", 6080))
    mcp: int = field(default_factory=lambda: _env_port("MCP_SERVER_BROWSER_PORT", 8100))


@dataclass(frozen=True)
class Gateway:
    port: int
    root: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def error_log(self) -> str:
        path = self.root / "error.log"
        return path.read_text(errors="replace") if path.exists() else ""


def render_snippets(dest: Path, sidecar: str) -> Path:
    """Copy deploy/nginx/*.conf to dest with the sidecar's address substituted."""
    dest.mkdir(parents=True, exist_ok=True)
    for src in sorted(NGINX_DIR.glob("*.conf")):
        text = src.read_text()
        (dest / src.name).write_text(text.replace(SHIPPED_SIDECAR, sidecar))
    return dest


def write_config(root: Path, port: int, up: Upstreams) -> Path:
    snippets = render_snippets(root / "browser-stack", up.sidecar)
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (root / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    ws = """proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;"""
    conf = root / "nginx.conf"
    conf.write_text(
        f"""
daemon off;
master_process off;
worker_processes 1;
pid {root}/nginx.pid;
error_log {root}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log {root}/access.log;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}

    server {{
        listen 127.0.0.1:{port};

        # what the image does with /opt/gem/nginx/*.conf
        include {snippets}/browser-stack.conf;

        # stand-ins for the image's browser locations, gated as docs/aio-image.md says
        location /cdp/ {{
            include {snippets}/gate-cdp.conf;
            proxy_pass http://127.0.0.1:{up.cdp}/;
            proxy_set_header Host $host:$server_port;
            {ws}
        }}
        location /devtools/ {{
            include {snippets}/gate-cdp.conf;
            proxy_pass http://127.0.0.1:{up.cdp};
            proxy_set_header Host $host:$server_port;
            {ws}
        }}
        location /websockify {{
            include {snippets}/gate-vnc.conf;
            proxy_pass http://127.0.0.1:{up.vnc_ws}/;
            {ws}
        }}
        location ~ ^/(sse|message)$ {{
            include {snippets}/gate-mcp.conf;
            proxy_pass http://127.0.0.1:{up.mcp};
            proxy_buffering off;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
        location /v1/shell/ {{
            default_type text/plain;
            return 200 "not gated\\n";
        }}
    }}
}}
"""
    )
    return conf


@contextlib.contextmanager
def running_gateway(root: Path, up: Upstreams) -> Iterator[Gateway]:
    """Start nginx in the foreground on a free port; stop it on exit."""
    nginx = nginx_binary()
    if nginx is None:
        raise RuntimeError("nginx is not installed (scripts/install-deps.sh --dev installs it)")
    root.mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = write_config(root, port, up)
    base = [nginx, "-p", str(root), "-e", str(root / "error.log"), "-c", str(conf)]
    check = subprocess.run([*base, "-t"], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError(f"nginx -t failed:\n{check.stderr}")
    proc = subprocess.Popen(
        base, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    gateway = Gateway(port=port, root=root)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"nginx exited {proc.returncode}:\n{gateway.error_log()}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not listen on {port}:\n{gateway.error_log()}")
            time.sleep(0.02)
        yield gateway
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()
