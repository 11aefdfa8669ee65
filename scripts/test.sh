#!/usr/bin/env bash
# Set up and run the whole test suite: lint, types, import contracts, then pytest (unit, real daemon
# processes, two real uids, the Textual TUI under Pilot, a 1 GiB push).
# With CI=true every prerequisite is required: a test fails instead of skipping when one is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ]; then
    # git (source commits), setpriv/useradd (the two-uid test) — on Debian these come with the base
    # system, but a slim image may lack them — and promtool (Debian's prometheus) to check expositions.
    need=()
    command -v git >/dev/null || need+=(git)
    command -v setpriv >/dev/null || need+=(util-linux)
    command -v useradd >/dev/null || need+=(passwd)
    command -v promtool >/dev/null || need+=(prometheus)
    if [ "${#need[@]}" -gt 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${need[@]}" >/dev/null
    fi
fi

bash scripts/setup.sh dev
if [ "${CI:-}" = true ]; then export MODELTUI_REQUIRE_SERVICES=1; fi

.venv/bin/ruff check .
.venv/bin/mypy
.venv/bin/lint-imports
.venv/bin/python -m pytest "$@"
