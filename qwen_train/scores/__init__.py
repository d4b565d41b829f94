"""Listening to checkpoints: a fixed listening set cloned by every durable checkpoint and once by the base model,
each clone judged (intelligibility, language, speaker similarity, quality, speaking rate, end of speech).

record.py       the scores file (RUN_DIR/scores/step-N.json, base.json): the contract with the daemon and the gate
listening.py    the listening set: held-out speakers' and utterances' rows, seeds, generation limits, its digest
calibration.py  how well the speaker verifier separates the bundle's real speakers: pairs, EER, the limit
judges.py       which judges (the gate's ASR and verifier, DNSMOS, Silero VAD), their names, the cached calibration
clones.py       one clone of one row through qwen-tts's voice-clone API; end-of-speech from its frames
language.py     the language the unforced Whisper judge hears
vad.py          speech seconds by Silero VAD's ONNX model (speaking rate, silent clones)
quality.py      DNSMOS P.835 SIG/BAK/OVRL through speechmos
work.py         each row's finished stages, kept as they finish (a killed scorer loses nothing)
summary.py      the rows pooled into one model's Scores
engine.py       scoring one model: clones, then each judge, one large model in memory at a time
models.py       what is scored (base, checkpoint, export), how it is loaded, its digest (identity.py: torch-free)
best.py         the best checkpoint by one stated rule (retention, gate and daemon agree)
retention.py    what retention keeps besides the newest: the best, those waiting for scores; the disk's say
board.py        the scores and clones in the run's TensorBoard at the checkpoint's step
plan.py         what scoring needs of a GPU, for the daemon to decide when it runs
command.py      `qwen-train score RUN_DIR`: options, usage errors, locks, exit codes (session.py: the order of work)

record.py, listening.py, calibration.py, summary.py, best.py, retention.py, identity.py and plan.py import
without torch.
"""
