#!/usr/bin/env bash
# One command on a fresh Debian 12 machine (as root): install everything, start a
# supervisord with the five browser-stack programs NOT started and the sidecar on
# 127.0.0.1:8110, show that nothing runs, ensure the stack, and wait for Ctrl-C.
#
#   scripts/demo.sh          install, start, show, wait for Ctrl-C, clean up
#   scripts/demo.sh --once   the same without waiting (a smoke test)
#
# The five programs use their standard display and ports (:99, 5900, 9222, 8100, 6080).
set -euo pipefail

once=0
case "${1-}" in
    --once) once=1 ;;
    '') ;;
    *) echo "usage: $0 [--once]" >&2; exit 2 ;;
esac

cd "$(dirname "$0")/.."
scripts/install-deps.sh

listen=127.0.0.1:8110
base=http://$listen
py=.venv/bin/python
tmp=$(mktemp -d "${TMPDIR:-/tmp}/browser-stack-demo.XXXXXX")
sleep_pid=

cleanup() {
    trap - EXIT INT TERM
    if [ -n "$sleep_pid" ]; then
        kill "$sleep_pid" 2>/dev/null || true
    fi
    echo
    echo "== shutting down supervisord (logs were in $tmp)"
    "$py" scripts/local_stack.py down --dir "$tmp" || true
    rm -rf -- "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

show() {
    "$py" -m json.tool
}

echo "== starting supervisord + sidecar in $tmp"
"$py" scripts/local_stack.py up --dir "$tmp" --listen "$listen"

echo
echo "== GET $base/v1/browser-stack/status  (nothing runs yet)"
curl -sS "$base/v1/browser-stack/status" | show

echo
echo "== POST $base/v1/browser-stack/ensure"
curl -sS -X POST "$base/v1/browser-stack/ensure" | show

cat <<EOF

The browser stack is up. Try:
  curl -s $base/healthz
  curl -s $base/readyz                                  # supervisord answers and has the five
  curl -s $base/v1/browser-stack/status
  curl -s '$base/v1/browser-stack/status?format=text'      # a table, with memory
  curl -s '$base/v1/browser-stack/memory?format=markdown'
  curl -s $base/metrics
  BROWSER_STACK_URL=$base .venv/bin/browser-stack status
  curl -s -X POST $base/v1/browser-stack/stop
  curl -s -X POST $base/v1/browser-stack/ensure -H 'Content-Type: application/json' -d '{"needs": ["cdp"]}'
  curl -s -X POST $base/v1/browser-stack/ensure -H 'Content-Type: application/json' -d '{"needs": ["cdp"], "wait": false}'
  SUPERVISOR_SERVER_URL=unix://$tmp/supervisor.sock .venv/bin/browser-stack doctor
  curl -s http://127.0.0.1:9222/json/version          # CDP, once ensured
  $py -m supervisor.supervisorctl -c $tmp/supervisord.conf status
EOF

if [ "$once" = 1 ]; then
    exit 0
fi
echo
echo "Ctrl-C to stop and clean up."
while :; do
    sleep 3600 &
    sleep_pid=$!
    wait "$sleep_pid" || true
done
