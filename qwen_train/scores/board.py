"""A checkpoint's scores in the run's TensorBoard: each score a scalar at the checkpoint's step, the clones audio.

Written into the run's own board dir (RUN_DIR/tensorboard, where the trainer writes its losses), through
the trainer's Board (whole records, a full disk met where it happens), as a new event file of the scorer's
own: TensorBoard reads every event file in a dir as one run, so the scores sit on the loss curves' step
axis. Tags: `listening/NAME` for the checkpoint's scores, `listening_base/NAME` for the base row repeated at
the same step (a flat reference line beside each curve), `listening_audio/NNN` for each clone (its row,
speaker and text in the tag's order of the listening set, which is the same for every checkpoint).
"""

from __future__ import annotations

from pathlib import Path

import soundfile as sf

from qwen_train.scores.record import Scores
from qwen_train.train.board import BOARD_DIR, Board

SCALARS = ("cer", "wer", "swedish_share", "similarity", "similarity_share", "dnsmos_sig", "dnsmos_bak",
           "dnsmos_ovrl", "rate_ratio", "limit_share", "silent_share")


def _scalars(board: Board, prefix: str, scores: Scores, step: int) -> None:
    for name in SCALARS:
        value = getattr(scores, name)
        if value is not None:
            board.add_scalar(f"{prefix}/{name}", float(value), step)


def _audio(board: Board, run_dir: Path, scores: Scores, step: int) -> None:
    for i, row in enumerate(scores.per_row):
        if not row.audio:
            continue
        path = run_dir / row.audio
        info = sf.info(str(path))
        board.add_audio(f"listening_audio/{i:03d}", path.read_bytes(), int(info.samplerate), int(info.frames), step)


def write_board(run_dir: Path, scores: Scores, base: Scores | None) -> Path | None:
    """The scores (and the base row beside them) at the checkpoint's step; the event file, None for the base."""
    if scores.step is None:
        return None
    with Board(run_dir / BOARD_DIR) as board:
        _scalars(board, "listening", scores, scores.step)
        if base is not None:
            _scalars(board, "listening_base", base, scores.step)
        _audio(board, run_dir, scores, scores.step)
        return board.path
