#!/usr/bin/env bash
# Set up a fresh machine: system packages, a venv with the training stack, this project.
# Idempotent: re-running skips what is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for tool in espeak-ng sox tmux; do command -v "$tool" >/dev/null || need+=("$tool"); done
# The daemon's integration tests: a private dockerd (docker.io brings containerd, runc and
# docker-init), real systemd in systemd-nspawn, standalone journald (systemd) and util-linux's
# nsenter/unshare/mount. Checked by package, since some install no command of their own name.
for pkg in docker.io systemd systemd-container util-linux; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]} (apt)"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip() { .venv/bin/python -m pip "$@"; }

# torch and torchaudio must match each other and the GPU machine (PyPI's CUDA build runs on CPU too).
if ! .venv/bin/python -c "import torch, torchaudio; assert torch.__version__.startswith('2.11.0') and torchaudio.__version__.startswith('2.11.0')" 2>/dev/null; then
  echo "setup: installing torch 2.11.0 + torchaudio 2.11.0 (a few minutes)"
  pip install -q torch==2.11.0 torchaudio==2.11.0
fi
# qwen-tts declares gradio for its demo UI only, and resemblyzer (the gate's speaker verifier,
# its encoder inside the wheel) an sdist webrtcvad that needs a compiler: install both without
# dependencies; their real runtime needs (webrtcvad-wheels, prebuilt) come with the [train] extra.
pip install -q --no-deps qwen-tts==0.1.1 resemblyzer==0.1.4
pip install -q -e '.[train,dev]'
.venv/bin/qwen-train doctor
echo "setup: done (.venv ready)"
