"""The optional Swedish language tag.

The base model knows ten languages, each a `codec_language_id` entry pointing
at its own row of the talker's codec embedding; inference puts that row in the
prefix (think, think_bos, LANG, think_eos). Adding Swedish means a new entry
with a row of its own, placed by the training layout exactly where inference
places a language id. The id is the lowest free control id, so the choice is
the same on every resume and export of the same base model.
"""

from __future__ import annotations

import torch

NEW_LANGUAGES = frozenset({"swedish"})
CONTROL_START = 2048  # codec ids below this are audio codes


def _used_ids(talker_config) -> set[int]:
    used = {int(v) for v in (talker_config.codec_language_id or {}).values()}
    used |= {int(v) for v in (talker_config.spk_id or {}).values() if isinstance(v, int)}
    for name in ("codec_pad_id", "codec_bos_id", "codec_eos_token_id", "codec_think_id", "codec_nothink_id",
                 "codec_think_bos_id", "codec_think_eos_id"):
        used.add(int(getattr(talker_config, name)))
    return used


def ensure_language(model, language: str | None) -> int | None:
    """Return the codec id of `language`, adding a new tag (and its embedding row) if needed."""
    if language is None:
        return None
    talker_config = model.config.talker_config
    table = talker_config.codec_language_id
    if language in table:
        return int(table[language])
    if language not in NEW_LANGUAGES:
        raise ValueError(
            f"language {language!r} is not in the model's codec_language_id ({sorted(table)}); "
            f"new tags can be added for: {sorted(NEW_LANGUAGES)}"
        )
    used = _used_ids(talker_config)
    new_id = next(i for i in range(CONTROL_START, talker_config.vocab_size) if i not in used)
    embedding = model.talker.model.codec_embedding.weight
    with torch.no_grad():
        rows = torch.tensor(sorted(int(v) for v in table.values()), device=embedding.device)
        embedding[new_id] = embedding[rows].float().mean(dim=0)  # in fp32 whatever the weights' dtype: one value
    table[language] = new_id
    if language not in model.supported_languages:
        model.supported_languages.append(language)
    return new_id
