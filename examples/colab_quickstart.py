# %% [markdown]
# # qwen-hemma on Colab (no daemon)
#
# `qwen-train run` works stand-alone: the same status.json heartbeat, durable
# checkpoints (posture 500/100/3 by default), report.json, TensorBoard events
# and exports as under the daemon. Open this file in Colab (it uses `# %%`
# cells) or run it top to bottom with `python examples/colab_quickstart.py`.
# Keep the run directory on Google Drive so a disconnected session resumes.

# %%
# 1. Install: system tools for the demo corpus, the pinned training stack, this project.
#    qwen-tts goes in without dependencies (it declares gradio for its demo UI only).
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(os.environ.get("QWEN_HEMMA_REPO", Path(__file__).resolve().parent.parent))
PY = sys.executable


def sh(*args: str) -> None:
    print("$", " ".join(args))
    subprocess.run(args, check=True)


if os.environ.get("COLAB_RELEASE_TAG"):  # only on Colab: apt and pip into the runtime
    sh("apt-get", "-qq", "install", "-y", "espeak-ng", "sox")
    sh(PY, "-m", "pip", "install", "-q", "torch==2.11.0", "torchaudio==2.11.0")
    sh(PY, "-m", "pip", "install", "-q", "--no-deps", "qwen-tts==0.1.1", "resemblyzer==0.1.4")
    sh(PY, "-m", "pip", "install", "-q", "-e", f"{REPO}[train]")

# %%
# 2. Data and model. The demo builds a Swedish espeak-ng corpus, the tiny model and a bundle.
#    For a real run point `model` at Qwen3-TTS-12Hz-1.7B-Base on disk and `bundle` at a
#    bundle made by `qwen-train prepare`.
WORK = Path(os.environ.get("QWEN_WORK", "/content/drive/MyDrive/qwen-hemma" if os.path.isdir("/content/drive")
                           else REPO / "demo-colab"))
sh(PY, "-m", "qwen_train", "demo", str(WORK))
SPEC = WORK / "spec.json"
RUN = WORK / "runs" / "demo-sv"

# %%
# 3. Train. On a fresh start this begins at step 0; after a disconnect, re-run this cell
#    with --resume: the cursor is checked against the bundle and the run continues exactly.
resume = ["--resume"] if (RUN / "checkpoints").is_dir() else []
sh(PY, "-m", "qwen_train", "run", str(SPEC), "--run-dir", str(RUN), *resume)

# %%
# 4. Watch: status.json is the heartbeat (state, step, losses, last checkpoint and eval).
print((RUN / "status.json").read_text()[:1500])
# In Colab: %load_ext tensorboard ; %tensorboard --logdir {RUN}/tensorboard

# %%
# 5. Export the newest checkpoint as a model directory and clone a held-out voice.
out = RUN / "export" / "latest"
if not out.exists():
    sh(PY, "-m", "qwen_train", "export", str(RUN), "--out", str(out))
print("exported:", out)
