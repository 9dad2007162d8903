#!/usr/bin/env bash
# Run every test tier (unit, integration, e2e) with the project's venv.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"` or `scripts/test.sh -x`.
# Needs scripts/install-deps.sh --dev first; e2e tests skip when the programs are missing
# (set BROWSER_STACK_E2E_REQUIRED=1 to make that a failure, as .ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest "$@"
