#!/usr/bin/env bash
# The test command: set up if needed, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check qwen_train qwen_daemon qwen_tui tests bench
.venv/bin/mypy qwen_train qwen_daemon qwen_tui
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
