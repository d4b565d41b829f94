#!/usr/bin/env bash
# The supported torch range's other end: a second venv, .venv-floor, with torch and torchaudio 2.10.0 (the
# floor: Hemma's release; from PyPI the CUDA 12.8 build, which runs on CPU), and the trainer's exactness tests
# in it: exact resume, the training prefix against generate(), loss alignment, export. The whole suite runs on
# the pin, 2.11.0 (scripts/test.sh); .ci/run runs both.
#   bash scripts/test_torch_floor.sh [--setup-only] [PYTEST ARGS]
# The rest of the stack goes in as the image puts it in (image/requirements.py: the project's requirements
# less torch, under a constraint on the torch there); the project itself is not installed here, so a setup
# running beside scripts/setup.sh never touches what that one writes. The tests import it from this tree.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=.venv-floor
PY=${PYTHON:-python3}
FLOOR=$("$PY" -c 'from qwen_train.torch_stack import FLOOR_PIN; print(FLOOR_PIN)')
pip() { "$VENV/bin/python" -m pip "$@"; }

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
have=$("$VENV/bin/python" -c 'from importlib.metadata import version; print(version("torch"))' 2>/dev/null || true)
if [ "${have%%+*}" != "$FLOOR" ] || ! "$VENV/bin/python" -m qwen_train.torch_stack check >/dev/null; then
  echo "floor: installing torch $FLOOR + torchaudio $FLOOR into $VENV (a few minutes on a fresh machine)"
  pip install -q --no-cache-dir "torch==$FLOOR" "torchaudio==$FLOOR"  # ~3 GB the venv keeps: no second copy
fi
"$PY" image/requirements.py pyproject.toml train dev > "$VENV/requirements.txt"
printf 'torch==%s\ntorchaudio==%s\n' "$FLOOR" "$FLOOR" > "$VENV/constraints.txt"
pip install -q -r "$VENV/requirements.txt" -c "$VENV/constraints.txt"
pip install -q --no-deps qwen-tts==0.1.1 resemblyzer==0.1.4
echo "floor: $("$VENV/bin/python" -m qwen_train.torch_stack check)"
if [ "${1:-}" = --setup-only ]; then exit 0; fi

# A kill mid-write and retention under a kill are the checkpointer's file handling, not torch's numbers: the
# whole suite covers them.
exec "$VENV/bin/python" -m pytest -q -p no:cacheprovider -n "${QH_TEST_WORKERS:-2}" --dist loadfile tests/test_resume_exact.py tests/test_train_prefix.py \
  tests/test_train_alignment.py tests/test_retention_export.py tests/test_torch_stack.py \
  --deselect tests/test_resume_exact.py::test_kill_during_checkpoint_write_keeps_the_previous_one \
  --deselect tests/test_retention_export.py::test_kill_between_durable_and_prune_loses_nothing "$@"
