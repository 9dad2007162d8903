#!/bin/bash
# /opt/gem/run.sh of the AIO stand-in: what the AIO sandbox image's entrypoint is known
# to do, and no more. Sources (docs/aio-image.md, "What could not be verified without
# a Docker engine", and the facts it cites):
# - the image's switches DISABLE_BROWSER, DISABLE_MCP_BROWSER and DISABLE_VNC become
#   AUTOSTART_BROWSER, AUTOSTART_MCP_BROWSER and AUTOSTART_VNC, which the program files
#   read as autostart=%(ENV_AUTOSTART_*)s (the image's documented switches; the
#   variable names are seen in a derived copy of run.sh);
# - it exports SUPERVISOR_SERVER_URL=unix:///var/run/supervisor.sock and ends in
#   `exec supervisord -n -c /opt/gem/supervisord.conf` (the same derived copy);
# - after the services start it waits for the ports in WAIT_PORTS, and with
#   WAIT_PORTS empty for the API server's port and CDP's 9222 (the upstream compose
#   file sets WAIT_PORTS=8079,8091; which port is the API server's is a guess: 8091).
# How the real one waits while supervisord runs in the foreground is not known: here a
# background loop writes what it waited for to /var/run/gem-wait, then "ready".
set -euo pipefail

autostart() {
    case ${1,,} in
        true | 1 | yes) echo false ;;
        *) echo true ;;
    esac
}
AUTOSTART_BROWSER=$(autostart "${DISABLE_BROWSER-}")
AUTOSTART_MCP_BROWSER=$(autostart "${DISABLE_MCP_BROWSER-}")
AUTOSTART_VNC=$(autostart "${DISABLE_VNC-}")
SUPERVISOR_SERVER_URL=unix:///var/run/supervisor.sock
export AUTOSTART_BROWSER AUTOSTART_MCP_BROWSER AUTOSTART_VNC SUPERVISOR_SERVER_URL

wait_ports=${WAIT_PORTS:-8091,${BROWSER_REMOTE_DEBUGGING_PORT:-9222}}
(
    echo "waiting for ${wait_ports}" > /var/run/gem-wait
    for entry in ${wait_ports//,/ }; do
        until (exec 3<> "/dev/tcp/127.0.0.1/${entry##*:}") 2> /dev/null; do
            sleep 0.2
        done
    done
    echo ready >> /var/run/gem-wait
) &

exec supervisord -n -c /opt/gem/supervisord.conf
