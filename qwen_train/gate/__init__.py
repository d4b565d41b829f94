"""The promotion gate: `qwen-train gate RUN_DIR` decides whether a trained model is a sidecar candidate.

verdict.py        the verdict file (the contract with the daemon and the dashboard)
target.py         what is judged: run dir, spec, checkpoint or export, base model (usage errors)
thresholds.py     thresholds and measurement bounds, from an optional JSON file
criteria.py       criteria that read records: ended_cleanly, resource_evidence, provenance
heldout.py        loading the models; eval_beats_base
clones.py         held-out voices cloned by the judged model
speaker.py        speaker_similarity (the base model's speaker encoder)
intelligibility.py  ASR transcripts and their character error rate (cer.py)
run.py            the order of work, the verdict written, the table printed, the exit code

Only verdict.py, thresholds.py, cer.py and criteria.py import without torch.
"""
