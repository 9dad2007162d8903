#!/usr/bin/env bash
# The test command: install what is missing (idempotent), run the linters, then every
# test tier (unit, integration, e2e) with the project's venv.
# Extra arguments go to pytest, e.g. `scripts/test.sh -m "not e2e"` or `scripts/test.sh -x`.
# e2e tests skip when the programs are missing (BROWSER_STACK_E2E_REQUIRED=1, set by
# .ci/run, makes that a failure).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh --dev
.venv/bin/ruff check src tests scripts bench
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
