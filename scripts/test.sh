#!/usr/bin/env bash
# The test command: set up if needed, then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check qwen_train qwen_daemon qwen_tui tests bench
.venv/bin/mypy qwen_train qwen_daemon qwen_tui
# Two workers, each taking whole test files (module fixtures build once); QH_TEST_WORKERS=0 runs in this process.
.venv/bin/python -m pytest -q -p no:cacheprovider -n "${QH_TEST_WORKERS:-2}" --dist loadfile "$@"
