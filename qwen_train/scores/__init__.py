"""Listening to checkpoints: a fixed listening set cloned by every durable checkpoint and once by the base model,
each clone judged (intelligibility, language, speaker similarity, quality, speaking rate, end of speech)."""
