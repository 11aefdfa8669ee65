#!/usr/bin/env bash
# Set up (first time) and open the modeltui TUI on an embedded daemon: SQLite, no other services.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/modeltui "$@"
