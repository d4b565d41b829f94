"""Swedish corpora -> a frozen, verifiable bundle, source by source and role by role.

importers (rixvox, fleurs, waxholm, upstream_jsonl; recordings: long audio planned
by VAD, transcribed by Whisper or the user) -> window (decode, validate,
resample; resumable from the journal, bounded) -> select (outliers, shares,
splits) -> codes (batched Qwen3TTSTokenizer.encode, content-hash cache) ->
assemble (anchors, manifest, stats, rejects, fingerprint, read-only).
"""
