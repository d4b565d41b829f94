#!/usr/bin/env bash
# Make a venv (default .venv) and give it a torch/torchaudio pair the trainer supports, keeping one that is
# already there: Hemma's ROCm 2.10.0+rocm7.1 (from the PyTorch ROCm index, which PyPI cannot replace in kind),
# the ROCm image's, or any release of the range (qwen_train/torch_stack.py) that is one build.
#   bash scripts/torch_setup.sh [VENV]        PYTHON=... picks the interpreter a new venv is made from
# A new venv made from an interpreter that already has a good pair (the image's venv, a system-wide ROCm torch)
# sees that interpreter's packages, so its torch is kept there too instead of being downloaded again.
# Otherwise qwen_train.torch_stack names what pip installs: PyPI's pin 2.11.0 (2.10.0 under an NVIDIA driver
# older than 580), or only a torchaudio of the build of an in-range torch. Standard library only until then.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${1:-.venv}
PY=${PYTHON:-python3}
judge() { "$1" -m qwen_train.torch_stack "${@:2}"; }

if [ ! -x "$VENV/bin/python" ]; then
  if found=$(judge "$PY" check 2>/dev/null); then
    echo "setup: $PY has $found; $VENV is made on top of it"
    "$PY" -m venv --system-site-packages "$VENV"
    parent=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    own=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "$parent" > "$own/qwen-hemma-parent.pth"  # a venv's own packages: --system-site-packages skips them
  else
    "$PY" -m venv "$VENV"
  fi
fi

if found=$(judge "$VENV/bin/python" check); then
  echo "setup: keeping $found"
else
  mapfile -t args < <(judge "$VENV/bin/python" install-args)
  echo "setup: $found"
  echo "setup: pip install ${args[*]} (a few minutes for torch)"
  "$VENV/bin/python" -m pip install -q "${args[@]}"
  judge "$VENV/bin/python" check
fi
