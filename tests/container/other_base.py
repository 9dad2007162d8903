"""A second AIO-like base: its run.sh switch of its own and its program files
(tests/container/test_other_base.py builds it; test_switch_mapping.py reads it)."""

from __future__ import annotations

# run.sh of the other base: the stand-in's, with one more switch of the image's own.
JUPYTER_SWITCH = 'AUTOSTART_JUPYTER=$(autostart "${DISABLE_JUPYTER-}"); export AUTOSTART_JUPYTER'
PROGRAM_FILE = """[program:{name}]
command={command}
autostart=%(ENV_{autostart})s
autorestart=true
priority={priority}
stopasgroup={stopasgroup}
killasgroup=true
stdout_logfile=/var/log/gem/{name}.log
redirect_stderr=true
{more}
"""
PROGRAMS_OF_THE_BASE = {
    "tigervnc": (
        "Xvnc :99 -rfbport 5900 -SecurityTypes None -localhost -nolisten tcp -BlacklistTimeout=0",
        "AUTOSTART_VNC",
        "",
    ),
    "openbox": ("openbox --sm-disable", "AUTOSTART_VNC", 'environment=DISPLAY=":99"'),
    "browser": (
        "chromium --no-sandbox --remote-debugging-address=127.0.0.1 "
        "--remote-debugging-port=9222 --user-data-dir=/home/gem/.config/chromium "
        "--no-first-run --disable-background-networking --disable-component-update "
        "--disable-sync --disable-quic --disable-dev-shm-usage --disable-gpu about:blank",
        "AUTOSTART_BROWSER",
        'environment=DISPLAY=":99"\nstopsignal=INT\nstopwaitsecs=20',
    ),
    "mcp-server-browser": (
        "mcp-server-browser --host 127.0.0.1 --port 8100 "
        "--cdp-endpoint http://127.0.0.1:9222/json/version",
        "AUTOSTART_MCP_BROWSER",
        "",
    ),
    "websocat": (
        "websocat --binary ws-l:127.0.0.1:6080 tcp:127.0.0.1:5900",
        "AUTOSTART_VNC",
        "",
    ),
    "jupyter": ("sleep infinity", "AUTOSTART_JUPYTER", ""),
}
