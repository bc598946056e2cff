"""Reading a file within a size limit: every way it can fail names the file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sockmapd.config.files import UnreadableFile, check_readable, read_bounded, read_bounded_text


def test_returns_a_file_of_exactly_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 8)
    assert read_bounded(path, 8, "f") == b"x" * 8


def test_rejects_one_byte_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 9)
    with pytest.raises(UnreadableFile) as info:
        read_bounded(path, 8, "the file")
    assert str(info.value) == "the file is larger than 8 bytes"


def test_reads_no_more_than_one_byte_past_the_limit() -> None:
    # /dev/zero never ends: only a bounded read can return from it.
    with pytest.raises(UnreadableFile, match="larger than 16 bytes"):
        read_bounded(Path("/dev/zero"), 16, "zero", regular=False)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile) as info:
        read_bounded(tmp_path / "nope", 8, "nope")
    assert str(info.value) == "cannot read nope: No such file or directory"


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    path.chmod(0)
    with pytest.raises(UnreadableFile) as info:
        read_bounded(path, 8, str(path))
    assert str(info.value) == f"cannot read {path}: Permission denied"


def test_directory_is_not_a_regular_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile) as info:
        read_bounded(tmp_path, 8, str(tmp_path))
    assert str(info.value) == f"{tmp_path} is not a regular file"


def test_fifo_is_refused_without_opening_it(tmp_path: Path) -> None:
    # Opening a FIFO with no writer would block for ever.
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnreadableFile, match="is not a regular file"):
        read_bounded(fifo, 8, str(fifo))


def test_directory_without_the_regular_check_fails_on_open(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile) as info:
        read_bounded(tmp_path, 8, "the file", regular=False)
    assert str(info.value) == "cannot read the file: Is a directory"


def test_text_is_decoded_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes("grüße\n".encode())
    assert read_bounded_text(path, 64, "f") == "grüße\n"


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"ok\n\xff\xfe")
    with pytest.raises(UnreadableFile) as info:
        read_bounded_text(path, 64, "the file")
    assert str(info.value) == "the file is not valid UTF-8"


def test_text_over_the_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"\xff" * 9)
    with pytest.raises(UnreadableFile, match="larger than 8 bytes"):
        read_bounded_text(path, 8, "f")


def test_unreadable_file_is_a_value_error() -> None:
    # Model validators raise it as is: pydantic reports a ValueError at the field's path.
    assert issubclass(UnreadableFile, ValueError)


def test_check_readable_accepts_a_file_of_any_size(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100_000)
    check_readable(path, "f")


def test_check_readable_accepts_an_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.touch()
    check_readable(path, "f")


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_check_readable_failures(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "nope" if kind == "missing" else tmp_path
    expected = (
        f"cannot read {path}: No such file or directory"
        if kind == "missing"
        else f"{path} is not a regular file"
    )
    with pytest.raises(UnreadableFile) as info:
        check_readable(path, str(path))
    assert str(info.value) == expected
