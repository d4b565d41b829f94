"""Fixtures in each publisher's layout, spoken by espeak-ng, with corrupt rows mixed in.

Base clips: several espeak-ng Swedish voices (speakers) at 16 kHz, the rate of
RixVox, FLEURS and Waxholm. Each builder writes one source's real layout and
returns {orig_id: expected reason or None} so tests can check every row.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from qwen_train.corpus.sentences import SENTENCES

VOICES = (("anna", "f2", 70, 150), ("bo", "m1", 30, 140), ("cia", "f4", 85, 165),
          ("dan", "m3", 45, 130), ("eva", "f1", 60, 160), ("finn", "m2", 40, 145))


@dataclass(frozen=True)
class Clip:
    speaker: str
    text: str
    path: Path  # 16 kHz mono 16-bit wav

    def samples(self) -> np.ndarray:
        audio, _ = sf.read(str(self.path), dtype="int16")
        return np.asarray(audio)


def speak_clips(out: Path, per_speaker: int = 4) -> list[Clip]:
    clips: list[Clip] = []
    out.mkdir(parents=True, exist_ok=True)
    for k, (spk, variant, pitch, speed) in enumerate(VOICES):
        for j in range(per_speaker):
            text = SENTENCES[(k * 5 + j) % len(SENTENCES)]
            raw, wav = out / f"{spk}{j}.raw.wav", out / f"{spk}{j}.wav"
            subprocess.run(["espeak-ng", "-v", f"sv+{variant}", "-p", str(pitch), "-s", str(speed), "-w", str(raw),
                            text], check=True, capture_output=True)
            subprocess.run(["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)], check=True,
                           capture_output=True)
            raw.unlink()
            clips.append(Clip(spk, text, wav))
    return clips


def wav_bytes(samples: np.ndarray, rate: int = 16000, fmt: str = "WAV") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, rate, format=fmt, subtype="PCM_16")
    return buf.getvalue()


def iso646(text: str) -> str:
    return text.translate(str.maketrans({"ä": "{", "å": "}", "ö": "|", "Ä": "[", "Å": "]", "Ö": "\\"}))


def smp_bytes(samples: np.ndarray, rate: int = 16000) -> bytes:
    lines = ["file=samp ; file type is sampled signal", "msb=first ; byte order", f"sftot={rate} ; sampling frequency",
             "nchans=1 ; number of channels", "preemph=no", f"range={samples.min()},{samples.max()}", "="]
    header = "\n".join(lines).encode("latin-1") + b"\n"
    return header.ljust(1024, b"\x00") + samples.astype(">i2").tobytes()


def make_waxholm(root: Path, clips: list[Clip]) -> dict[str, str | None]:
    expect: dict[str, str | None] = {}
    for i, clip in enumerate(clips[:8]):
        spk = f"fp20{i % 4 + 1:02d}"
        stem = f"{spk}.1.{i:02d}"
        d = root / "scenes_formatted" / spk
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{stem}.smp").write_bytes(smp_bytes(clip.samples()))
        mix = f"CORRECTED: OK test\nWaxholm dialog. /u/wax/data/scenes/{spk}/{stem}.smp\nTEXT:\n" \
              f"{iso646(clip.text)}\nJ'A:G\nFR 11219 #J >pm #J> 0.701 sec\n"
        (d / f"{stem}.smp.mix").write_text(mix, encoding="latin-1")
        expect[stem] = None
    d = root / "scenes_formatted" / "fp2005"
    d.mkdir(parents=True)
    good = clips[8].samples()
    (d / "fp2005.1.00.smp").write_bytes(smp_bytes(good))  # no label file
    expect["fp2005.1.00"] = "missing_label"
    (d / "fp2005.1.01.smp").write_bytes(b"not a header at all" * 10)
    (d / "fp2005.1.01.smp.mix").write_text("TEXT:\nhej p} dig\n", encoding="latin-1")
    expect["fp2005.1.01"] = "decode_error"
    (d / "fp2005.1.02.smp").write_bytes(smp_bytes(np.zeros(32000, dtype=np.int16)))
    (d / "fp2005.1.02.smp.mix").write_text("TEXT:\nhej p} dig du\n", encoding="latin-1")
    expect["fp2005.1.02"] = "silent"
    clipped = np.clip(good.astype(np.int32) * 40, -32768, 32767).astype(np.int16)
    (d / "fp2005.1.03.smp").write_bytes(smp_bytes(clipped))
    (d / "fp2005.1.03.smp.mix").write_text(f"TEXT:\n{iso646(clips[8].text)}\n", encoding="latin-1")
    expect["fp2005.1.03"] = "clipping"
    (d / "fp2005.1.04.smp").write_bytes(smp_bytes(good))
    (d / "fp2005.1.04.smp.mix").write_text("CORRECTED: no text line here\n", encoding="latin-1")
    expect["fp2005.1.04"] = "bad_metadata"
    return expect


def make_fleurs(root: Path, clips: list[Clip]) -> dict[str, str | None]:
    """data/sv_se/{dev,test}.tsv + audio/{split}.tar.gz (dev) and an extracted audio/test/."""
    lang = root / "data" / "sv_se"
    expect: dict[str, str | None] = {}
    for split, chosen in (("dev", clips[0:6]), ("test", clips[6:12])):
        lines, files = [], {}
        for i, clip in enumerate(chosen):
            name = f"{1000 + i}{split}.wav"
            files[name] = clip.path.read_bytes()
            norm = clip.text.lower().strip(".?!")
            lines.append("\t".join([str(i), name, clip.text, norm, norm.replace(" ", "|"), "48000", "FEMALE"]))
            expect[f"{split}/{Path(name).stem}"] = None
        lines.append("broken line without tabs")
        expect[f"{split}:line{len(lines)}"] = "bad_metadata"
        lines.append("\t".join(["99", f"missing{split}.wav", "Hej då.", "hej då", "hej|då", "1", "MALE"]))
        expect[f"{split}/missing{split}"] = "missing_audio"
        trunc = f"trunc{split}.wav"
        files[trunc] = clips[0].path.read_bytes()[:30]
        lines.append("\t".join(["98", trunc, "Hej på dig.", "hej på dig", "x", "1", "MALE"]))
        expect[f"{split}/trunc{split}"] = "decode_error"
        eng = f"eng{split}.wav"
        files[eng] = clips[1].path.read_bytes()
        lines.append("\t".join(["97", eng, "This is the one that they have for you", "x", "x", "1", "MALE"]))
        expect[f"{split}/eng{split}"] = "not_swedish"
        lang.mkdir(parents=True, exist_ok=True)
        (lang / f"{split}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        audio = lang / "audio"
        audio.mkdir(exist_ok=True)
        if split == "dev":
            with tarfile.open(audio / "dev.tar.gz", "w:gz") as tar:
                for name, data in files.items():
                    info = tarfile.TarInfo(f"dev/{name}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        else:
            (audio / "test").mkdir()
            for name, data in files.items():
                (audio / "test" / name).write_bytes(data)
    return expect


def make_rixvox(root: Path, clips: list[Clip]) -> dict[str, str | None]:
    """data/train/0000.parquet with the HF Audio struct and RixVox v1 metadata, plus a corrupt shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    recs: list[dict[str, object]] = []
    expect: dict[str, str | None] = {}

    def add(clip_bytes: bytes | None, text: str, speaker: str | None, obs: int, reason: str | None) -> None:
        recs.append({"dokid": "H901", "anforande_nummer": 7, "observation_nr": obs,
                     "audio": {"bytes": clip_bytes, "path": f"H901_{obs}.flac"}, "text": text,
                     "speaker": speaker, "intressent_id": None if speaker is None else f"id-{speaker}",
                     "party": "S", "gender": "female"})
        expect[f"H901-7-{obs}" + ("#dup" if reason == "duplicate_id" else "")] = reason

    for i, clip in enumerate(clips[:12]):
        add(wav_bytes(clip.samples(), fmt="FLAC"), clip.text, clip.speaker, i, None)
    add(b"garbage" * 20, "Det här är trasigt ljud.", "anna", 20, "decode_error")
    add(wav_bytes(clips[0].samples()), "   ", "anna", 21, "empty_text")
    add(wav_bytes(clips[0].samples()), clips[0].text, None, 22, "bad_metadata")
    add(wav_bytes(clips[1].samples()), clips[1].text, "bo", 3, "duplicate_id")
    add(wav_bytes(clips[2].samples()[::2], rate=8000), clips[2].text, "cia", 23, "sample_rate")
    long = np.concatenate([c.samples() for c in clips[:10]])
    add(wav_bytes(long), "Ett mycket långt anförande.", "dan", 24, "too_long")
    add(wav_bytes(clips[3].samples()), clips[3].text * 12, "dan", 25, "speech_rate")
    shard = root / "data" / "train"
    shard.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(recs), shard / "0000.parquet")
    (shard / "0001.parquet").write_bytes(b"PAR1 this is not parquet")
    expect["data/train/0001.parquet".removeprefix("data/")] = "bad_metadata"
    return expect


def make_upstream(root: Path, clips: list[Clip], repeat: int = 1) -> dict[str, str | None]:
    """train.jsonl in the upstream shape; `repeat` multiplies the good rows (for long windows).

    The clips are copied under root/wavs and named by absolute path: a corpus's audio lies inside
    its root (one outside is `path_escape`), and absolute paths inside it are fine.
    """
    import json
    import shutil

    expect: dict[str, str | None] = {}
    lines: list[str] = []
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    inside = {c.path: root / "wavs" / c.path.name for c in clips}
    for src, dest in inside.items():
        shutil.copyfile(src, dest)
    refs = {c.speaker: inside[c.path] for c in clips}
    for r in range(repeat):
        for i, clip in enumerate(clips):
            uid = f"{clip.speaker}-{r:03d}-{i:02d}"
            lines.append(json.dumps({"id": uid, "audio": str(inside[clip.path]), "text": clip.text,
                                     "ref_audio": str(refs[clip.speaker]), "speaker": clip.speaker},
                                    ensure_ascii=False))
            expect[uid] = None
    lines.append(json.dumps({"id": "noref", "audio": str(inside[clips[0].path]), "text": clips[0].text,
                             "ref_audio": "nowhere/ref.wav"}))
    expect["noref"] = "missing_ref_audio"
    lines.append(json.dumps({"id": "noaudio", "audio": "nowhere/a.wav", "text": "Hej då.", "ref_audio": "x.wav"}))
    expect["noaudio"] = "missing_audio"
    lines.append("{not json")
    expect[f"line{len(lines)}"] = "bad_metadata"
    root.mkdir(parents=True, exist_ok=True)
    (root / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return expect


def _tar_gz(path: Path, members: list[tuple[str, bytes]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def rixvox_record(clip: Clip, obs: int, **over: object) -> dict[str, object]:
    """One metadata row with KBLab/rixvox's columns, its duration the clip's own."""
    duration = round(len(clip.samples()) / 16000, 3)
    start = 10.0 * obs
    rec: dict[str, object] = {
        "dokid": "GR01KRU1", "anforande_nummer": 5, "observation_nr": obs, "speaker": f"{clip.speaker.title()} Ek",
        "party": "S", "gender": "female", "debatedate": "2013-10-22", "electoral_district": "Uppsala län",
        "birth_year": 1970, "intressent_id": f"0{zlib.crc32(clip.speaker.encode()):011d}", "speaker_from_id": True,
        "speaker_audio_meta": f"{clip.speaker.title()} Ek (S)", "text": clip.text, "start": start,
        "end": start + duration, "duration": duration, "bleu_score": 0.8,
        "filename": f"GR01KRU1/24422102200286275{obs:02d}_anf5_{int(start)}_{int(start + duration)}.wav",
        "speaker_total_hours": 12.5,
    }
    rec.update(over)
    return rec


def make_rixvox_published(root: Path, clips: list[Clip]) -> dict[str, str | None]:
    """KBLab/rixvox as served: data/{split}_metadata.parquet + data/train/train_{n}.tar.gz (dev extracted in place).

    Returns {orig_id: expected reason or None}; the speakers are clip speakers' person ids, except `bo`,
    whose rows have no intressent_id (speaker_from_id False) and fall back to the name.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = root / "data"
    expect: dict[str, str | None] = {}
    train: list[dict[str, object]] = []
    members: list[tuple[str, bytes]] = []
    for obs, clip in enumerate(clips[:10]):
        over: dict[str, object] = {"intressent_id": None, "speaker_from_id": False} if clip.speaker == "bo" else {}
        rec = rixvox_record(clip, obs, **over)
        train.append(rec)
        members.append((str(rec["filename"]), clip.path.read_bytes()))
        expect[str(rec["filename"]).removesuffix(".wav")] = None

    def bad(obs: int, reason: str, member: bytes | None, **over: object) -> None:
        rec = rixvox_record(clips[0], obs, **over)
        train.append(rec)
        if member is not None:
            members.append((str(rec["filename"]), member))
        expect[str(rec["filename"]).removesuffix(".wav")] = reason

    bad(40, "missing_audio", None)
    bad(41, "low_alignment", clips[1].path.read_bytes(), bleu_score=0.12)
    bad(42, "decode_error", b"RIFF garbage" * 30)
    bad(43, "empty_text", clips[2].path.read_bytes(), text=" ")
    bad(44, "bad_metadata", clips[3].path.read_bytes(), intressent_id=None, speaker=None, speaker_from_id=False)
    members.insert(3, ("GR01KRU1/not_in_metadata.wav", clips[4].path.read_bytes()))
    data.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(train), data / "train_metadata.parquet")
    half = len(members) // 2
    _tar_gz(data / "train" / "train_0.tar.gz", members[:half])
    _tar_gz(data / "train" / "train_1.tar.gz", members[half:])
    dev = [rixvox_record(clip, 60 + k, dokid="GR01DEV") for k, clip in enumerate(clips[10:12])]
    for rec, clip in zip(dev, clips[10:12], strict=True):
        rec["filename"] = str(rec["filename"]).replace("GR01KRU1", "GR01DEV")
        (data / "dev" / "GR01DEV").mkdir(parents=True, exist_ok=True)
        (data / "dev" / str(rec["filename"])).write_bytes(clip.path.read_bytes())
        expect[str(rec["filename"]).removesuffix(".wav")] = None
    pq.write_table(pa.Table.from_pylist(dev), data / "dev_metadata.parquet")
    return expect
