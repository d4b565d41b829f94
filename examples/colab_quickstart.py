# %% [markdown]
# # qwen-hemma on Colab (no daemon)
#
# [![Open in Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/OWNER/qwen-hemma/blob/main/examples/colab_quickstart.ipynb)
# (then Runtime > Change runtime type > a GPU)
#
# `qwen-train run` works stand-alone: the same status.json heartbeat, durable checkpoints (posture
# 500/100/3 by default), report.json, TensorBoard events and exports as under the daemon. This notebook
# trains the demo (a Swedish espeak-ng corpus, the tiny model), stops it, resumes it exactly, and
# exports the result. Mount Google Drive first to keep the run directory there, so a disconnected
# session resumes.
#
# It is generated from `examples/colab_quickstart.py` by `python scripts/colab_notebook.py`: edit the
# script, then regenerate (a test keeps the two equal). `python examples/colab_quickstart.py` runs the
# same cells top to bottom outside a notebook.

# %%
# 1. The project. On Colab: espeak-ng and sox for the demo corpus, and a clone of this repository.
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COLAB = bool(os.environ.get("COLAB_RELEASE_TAG"))
GIT_URL = os.environ.get("QWEN_HEMMA_GIT", "https://github.com/OWNER/qwen-hemma.git")
PY = sys.executable


def sh(*args: str, cwd: Path | None = None) -> None:
    print("$", " ".join(args), flush=True)
    subprocess.run(args, check=True, cwd=cwd)


def find_repo() -> Path:
    """QWEN_HEMMA_REPO, Colab's clone, or the checkout this runs in (from its root or examples/)."""
    if os.environ.get("QWEN_HEMMA_REPO"):
        return Path(os.environ["QWEN_HEMMA_REPO"])
    if COLAB:
        return Path("/content/qwen-hemma")
    here = Path.cwd().resolve()
    return next((p for p in (here, *here.parents) if (p / "qwen_train" / "torch_stack.py").is_file()), here)


REPO = find_repo()
if COLAB:
    sh("apt-get", "-qq", "install", "-y", "espeak-ng", "sox")
    if not REPO.exists():
        sh("git", "clone", "--depth", "1", GIT_URL, str(REPO))
print("repository:", REPO)

# %%
# 2. The training stack. Colab's own torch and torchaudio stay when they are a pair the trainer
#    supports (a release from 2.10 to 2.11, the two of one build): they are built for Colab's driver,
#    and replacing them costs minutes on every fresh runtime. Otherwise qwen_train.torch_stack names
#    what pip installs (PyPI's 2.11.0, or 2.10.0 under a driver older than 580). Then the rest:
#    qwen-tts and resemblyzer without their dependencies (gradio for a demo UI; a webrtcvad that
#    needs a compiler), and this project's train extra, whose torch range keeps the torch found.


def torch_stack(command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PY, "-m", "qwen_train.torch_stack", command], cwd=REPO, capture_output=True, text=True)


found = torch_stack("check")
print("found:", found.stdout.strip())
if COLAB:
    if found.returncode != 0:
        sh(PY, "-m", "pip", "install", "-q", *torch_stack("install-args").stdout.split())
        print("now:", torch_stack("check").stdout.strip())
    sh(PY, "-m", "pip", "install", "-q", "--no-deps", "qwen-tts==0.1.1", "resemblyzer==0.1.4")
    sh(PY, "-m", "pip", "install", "-q", "-e", f"{REPO}[train]")
elif found.returncode != 0:
    raise SystemExit(f"this torch cannot train; {found.stdout.strip()}")

# %%
# 3. Data and model. The demo builds a Swedish espeak-ng corpus (five voices), the tiny model (the
#    real architecture, random weights) and a frozen bundle, and reuses what is already there. For a
#    real run point the spec's `model` at Qwen3-TTS-12Hz-1.7B-Base on disk and its `bundle` at one
#    made by `qwen-train prepare`. QWEN_DEMO_STEPS shortens the demo (its spec says 3000 steps).
drive = Path("/content/drive/MyDrive")
WORK = Path(os.environ.get("QWEN_WORK") or (drive / "qwen-hemma" if drive.is_dir() else REPO / "demo-colab"))
sh(PY, "-m", "qwen_train", "demo", str(WORK), cwd=REPO)
SPEC = WORK / "spec.json"
spec = json.loads(SPEC.read_text())
STEPS = int(os.environ.get("QWEN_DEMO_STEPS") or spec["train"]["max_steps"])
spec["train"]["max_steps"] = STEPS
SPEC.write_text(json.dumps(spec, indent=2))
RUN = WORK / "runs" / "demo-sv"


def status() -> dict:
    """The run's heartbeat, or {} before the trainer has written one."""
    try:
        return json.loads((RUN / "status.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


# %%
# 4. Train: the first session. A Colab session can end at any moment; this one is ended on purpose a
#    third of the way in, as `qwen-daemon stop` ends a run: SIGTERM, and the trainer finishes its step,
#    writes a durable checkpoint and exits 5 (stopped). A disconnect kills it outright instead; resume
#    then starts from the newest durable checkpoint (every 100 steps in the demo's posture).
if not (RUN / "checkpoints").is_dir():
    first = subprocess.Popen([PY, "-m", "qwen_train", "run", str(SPEC), "--run-dir", str(RUN)], cwd=REPO)
    while first.poll() is None and status().get("step", 0) < max(1, STEPS // 3):
        time.sleep(0.5)
    if first.poll() is None:
        first.send_signal(signal.SIGTERM)
    print(f"first session: exit {first.wait()}, {status().get('state')} at step {status().get('step')}")

# %%
# 5. Resume: what to run after a disconnect (after cells 1-3). The cursor is checked against the bundle
#    and the run continues exactly where its checkpoint left off, to the spec's max_steps.
if status().get("state") != "completed":
    resume = ["--resume"] if (RUN / "checkpoints").is_dir() else []  # none yet: cell 4 was skipped
    sh(PY, "-m", "qwen_train", "run", str(SPEC), "--run-dir", str(RUN), *resume, cwd=REPO)
final = status()
print({key: final.get(key) for key in ("state", "step", "max_steps", "cursor_check")})
print("last checkpoint:", final.get("last_checkpoint"))
# Watch a run live the same way: status.json is rewritten every step. In Colab, for the curves:
#   %load_ext tensorboard
#   %tensorboard --logdir {RUN}/tensorboard

# %%
# 6. Export the newest checkpoint as a model directory. It keeps the speaker encoder and stays a
#    voice-cloning base model: `Qwen3TTSModel.from_pretrained(out)` clones any voice from reference audio.
out = RUN / "export" / "latest"
if not out.exists():
    sh(PY, "-m", "qwen_train", "export", str(RUN), "--out", str(out), cwd=REPO)
print("exported:", out, sorted(p.name for p in out.iterdir()))
