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

# The venv and its torch: a torch/torchaudio pair of the supported range that is one build stays (Hemma's ROCm
# torch, the image's); otherwise PyPI's pin (its CUDA build runs on CPU too). scripts/torch_setup.sh says how.
bash scripts/torch_setup.sh .venv
pip() { .venv/bin/python -m pip "$@"; }
# qwen-tts declares gradio for its demo UI only, and resemblyzer (the gate's speaker verifier,
# its encoder inside the wheel) an sdist webrtcvad that needs a compiler: install both without
# dependencies; their real runtime needs (webrtcvad-wheels, prebuilt) come with the [train] extra.
pip install -q --no-deps qwen-tts==0.1.1 resemblyzer==0.1.4
pip install -q -e '.[train,dev]'
.venv/bin/qwen-train doctor
echo "setup: done (.venv ready)"
