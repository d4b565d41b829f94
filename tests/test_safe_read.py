"""The one reader for files another party can write: special files, links, size and depth bounds."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import msgspec
import pytest

from qwen_train.safe_read import UnsafeFile, decode_json, json_depth, read_json, read_regular


class Small(msgspec.Struct):
    name: str


def test_a_regular_file_within_its_bound_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'{"name": "x"}')
    assert read_regular(path, 13) == b'{"name": "x"}'
    assert read_json(path, Small, 100).name == "x"


def test_a_fifo_is_refused_at_once_instead_of_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "status.json"
    os.mkfifo(fifo)
    done: list[BaseException] = []
    reader = threading.Thread(target=lambda: _catch(done, lambda: read_regular(fifo, 100, what="status")))
    reader.start()
    reader.join(5)
    assert not reader.is_alive(), "read_regular blocked on a FIFO"
    assert isinstance(done[0], UnsafeFile) and "a FIFO" in str(done[0]) and str(fifo) in str(done[0])


def test_devices_directories_and_oversized_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(UnsafeFile, match="character device"):
        read_regular("/dev/zero", 1 << 20)
    with pytest.raises(UnsafeFile, match="directory"):
        read_regular(tmp_path, 100)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 101)
    with pytest.raises(UnsafeFile, match="101 bytes, over the 100-byte bound"):
        read_regular(big, 100, what="spec")


def test_nofollow_refuses_a_symlink_and_a_plain_read_follows_it_but_checks_the_target(tmp_path: Path) -> None:
    target = tmp_path / "real"
    target.write_bytes(b"ok")
    link = tmp_path / "link"
    link.symlink_to(target)
    assert read_regular(link, 10) == b"ok"
    with pytest.raises(UnsafeFile, match="symlink"):
        read_regular(link, 10, nofollow=True)
    to_zero = tmp_path / "zero"
    to_zero.symlink_to("/dev/zero")
    with pytest.raises(UnsafeFile, match="character device"):
        read_regular(to_zero, 10)


def test_a_missing_file_stays_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        read_regular(tmp_path / "none", 10)


def test_depth_skips_brackets_inside_strings() -> None:
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{\\"]]]"}]}') == 3
    assert json_depth(b"1") == 0


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000])
def test_deep_json_is_a_value_error_not_a_recursion_error(body: bytes) -> None:
    with pytest.raises(ValueError, match="nested deeper than 64"):
        decode_json(body, object, "POST /runs")


def test_malformed_and_mistyped_json_name_their_source() -> None:
    with pytest.raises(ValueError, match=r"^req: not valid JSON"):
        decode_json(b'{"name": ', Small, "req")
    with pytest.raises(ValueError, match=r"^req: Expected `str`"):
        decode_json(b'{"name": 3}', Small, "req")


def _catch(into: list[BaseException], call: object) -> None:
    try:
        call()  # type: ignore[operator]
    except BaseException as exc:  # noqa: BLE001 - the test inspects it
        into.append(exc)


def test_an_audit_log_is_read_through_the_same_rules(tmp_path: Path) -> None:
    from qwen_train.atomic import append_durable, read_appended

    log = tmp_path / "audit.jsonl"
    append_durable(log, b'{"name": "a"}')
    append_durable(log, b'{"name": "b"}')
    assert [r.name for r in read_appended(log, Small)] == ["a", "b"]
    append_durable(log, b'{"name": ')
    with pytest.raises(ValueError, match=f"audit log {log}: not valid JSON"):
        read_appended(log, Small)
    fifo = tmp_path / "fifo.jsonl"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match=r"audit log .* \(a FIFO\)"):
        read_appended(fifo, Small)
    assert read_appended(tmp_path / "none.jsonl", Small) == []
