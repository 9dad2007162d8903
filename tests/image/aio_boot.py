"""The AIO image's boot path as stand-ins: its /opt/gem/run.sh, the supervisord.conf
that includes its program files, and its own five programs (what
tests/image/test_aio_layout.py lays out, and test_switch_mapping.py reads)."""

from __future__ import annotations

RUN_SH = """#!/bin/sh
# Stand-in for the AIO image's /opt/gem/run.sh.
set -eu
gem=$(cd "$(dirname "$0")" && pwd)
env -0 > "$gem/run.env"
autostart() {
    case $(printf '%s' "${1-}" | tr '[:upper:]' '[:lower:]') in
        true | 1 | yes) echo false ;;
        *) echo true ;;
    esac
}
AUTOSTART_BROWSER=$(autostart "${DISABLE_BROWSER-}")
AUTOSTART_MCP_BROWSER=$(autostart "${DISABLE_MCP_BROWSER-}")
AUTOSTART_VNC=$(autostart "${DISABLE_VNC-}")
SUPERVISOR_SERVER_URL="unix://$gem/supervisor.sock"
export AUTOSTART_BROWSER AUTOSTART_MCP_BROWSER AUTOSTART_VNC SUPERVISOR_SERVER_URL
exec "$SUPERVISORD" -n -c "$gem/supervisord.conf"
"""

SUPERVISORD_CONF = """[unix_http_server]
file={gem}/supervisor.sock
[supervisord]
nodaemon=true
logfile={gem}/supervisord.log
pidfile={gem}/supervisord.pid
childlogdir={gem}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[include]
files = {gem}/supervisord/*.conf
"""

# The image's own five, as stand-ins: (the AUTOSTART_* run.sh sets, the command
# line, more settings). {root} is the temp image's root.
IMAGE_PROGRAMS = {
    "tigervnc": ("AUTOSTART_VNC", "Xvnc :99 -rfbport 5900 -SecurityTypes None -localhost", ""),
    "openbox": ("AUTOSTART_VNC", "openbox", 'environment=DISPLAY=":99"\n'),
    "browser": (
        "AUTOSTART_BROWSER",
        "chromium --no-sandbox --remote-debugging-port=9222 "
        "--user-data-dir={root}/var/lib/browser/profile about:blank",
        'environment=DISPLAY=":99"\nstopsignal=INT\n',
    ),
    "mcp-server-browser": (
        "AUTOSTART_MCP_BROWSER",
        "mcp-server-browser --port 8100 --cdp-endpoint http://127.0.0.1:9222/json/version",
        "",
    ),
    "websocat": ("AUTOSTART_VNC", "websocat --binary ws-l:127.0.0.1:6080 tcp:127.0.0.1:5900", ""),
}
