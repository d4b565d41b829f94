#!/usr/bin/env bash
# The main job on the embedded default: a generated Swedish corpus (espeak-ng, 5 voices),
# the tiny Qwen3-TTS model and its bundle; the daemon launches the run; the dashboard watches it.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/qwen-train ] || bash scripts/setup.sh

ROOT=${QWEN_DEMO_DIR:-$PWD/demo}
export QWEN_DAEMON_SOCKET=${QWEN_DAEMON_SOCKET:-$ROOT/state/daemon.sock}
.venv/bin/qwen-train demo "$ROOT"

if ! .venv/bin/qwen-daemon runs >/dev/null 2>&1; then
  mkdir -p "$ROOT/state"
  echo "demo: starting qwen-daemon (log: $ROOT/daemon.log)"
  # The demo's gate (g in the dashboard) hears the clones with the demo's tiny Whisper, $ROOT/asr,
  # within the measurement bounds of $ROOT/gate.json (the thresholds stay the real ones).
  setsid .venv/bin/qwen-daemon serve --state-dir "$ROOT/state" --socket "$QWEN_DAEMON_SOCKET" \
    --gate-asr "$ROOT/asr" --gate-thresholds "$ROOT/gate.json" >"$ROOT/daemon.log" 2>&1 </dev/null &
  for _ in $(seq 100); do [ -S "$QWEN_DAEMON_SOCKET" ] && break; sleep 0.1; done
fi

.venv/bin/qwen-daemon launch "$ROOT/spec.json" || echo "demo: run demo-sv already exists; showing it"
if [ -t 0 ] && [ -t 1 ]; then
  exec .venv/bin/qwen-tui --run demo-sv
fi
# No terminal (CI, a pipe): show progress as text instead of the dashboard.
for _ in $(seq 12); do sleep 5; .venv/bin/qwen-daemon runs; done
