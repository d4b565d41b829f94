"""The promotion gate: `qwen-train gate RUN_DIR` decides whether a trained model is a sidecar candidate.

verdict.py        the verdict file (the contract with the daemon and the dashboard): criteria, judges, rows
target.py         what is judged: run dir, spec, checkpoint or export, base model, judges' dirs (usage errors)
thresholds.py     thresholds and measurement bounds, from an optional JSON file
criteria.py       criteria that read records: ended_cleanly, resource_evidence, provenance
heldout.py        loading the models; eval_beats_base
clones.py         held-out voices cloned by the judged model
verifier.py       the independent speaker verifier (resemblyzer, or a transformers x-vector model)
speaker.py        speaker_similarity: the verifier's cosine, the base encoder's as a second figure
asr.py            the ASR judge: a Whisper-family model (KB-Whisper) or a CTC model
intelligibility.py  transcripts and their CER, WER beside it (cer.py: jiwer after Swedish normalisation)
speakers.py       the verdict's per-held-out-speaker rows
report.py         the verdict as text: the table, the judges, the rows
run.py            the order of work, the verdict written, the exit code
publish.py        the verdict and its samples swapped into RUN_DIR/gate in one rename
tiny_whisper.py   a tiny random-weight Whisper: the demo's and the tests' ASR judge, offline

verdict.py, thresholds.py, cer.py, criteria.py, speakers.py and report.py import without torch.
"""
