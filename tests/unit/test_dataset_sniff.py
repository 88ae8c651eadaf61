"""Looking at an upload's bytes before reading records: binary or text, UTF-16/32 without
a byte-order mark, the CSV delimiter, control characters in a cell (no Django)."""

from __future__ import annotations

from pathlib import Path

import pytest

from workers.ml.data.sniff import (
    control_character,
    looks_binary,
    separator_guess,
    sniff_delimiter,
    unicode_without_bom,
)
from workers.ml.data.validation import inspect, validate

TEXT = "input,target\nwhat is two and two?,four\n" * 20


@pytest.mark.parametrize(
    ("codec", "name"),
    [
        ("utf-16-le", "UTF-16 (LE)"),
        ("utf-16-be", "UTF-16 (BE)"),
        ("utf-32-le", "UTF-32 (LE)"),
        ("utf-32-be", "UTF-32 (BE)"),
    ],
)
def test_it_names_utf16_and_utf32_without_a_bom_by_where_the_nuls_fall(
    codec: str, name: str
) -> None:
    assert unicode_without_bom(TEXT.encode(codec)) == name


def test_it_calls_neither_utf8_text_nor_random_bytes_utf16() -> None:
    assert unicode_without_bom(TEXT.encode()) is None
    assert unicode_without_bom(bytes(range(256)) * 16) is None


def test_one_stray_nul_is_text_but_many_control_bytes_are_binary() -> None:
    assert not looks_binary(b"\x00" + TEXT.encode())
    assert looks_binary(bytes(range(256)) * 16)
    assert not looks_binary(TEXT.encode())


@pytest.mark.parametrize(
    ("text", "delimiter"),
    [
        ("input,target\na,b\n", ","),
        ("input;target\nhello, world;b\n", ";"),
        ("input\ttarget\na, b\tc\n", "\t"),
        ("input|target\na;b|c\n", "|"),
        ('"in;put",target\n"a;b",c\n', ","),
        ("just one column\nhello\n", None),
    ],
)
def test_it_sniffs_the_delimiter_that_splits_header_and_rows_alike(
    text: str, delimiter: str | None
) -> None:
    assert sniff_delimiter(text)[0] == delimiter


def test_it_guesses_the_separator_of_a_one_column_header() -> None:
    assert separator_guess("input:target") == "':'"
    assert separator_guess("input target") == "spaces"
    assert separator_guess("input") is None


def test_it_finds_the_first_control_character_but_allows_tabs_and_line_breaks() -> None:
    assert control_character("a\tb\r\nc") is None
    assert control_character("ab\x00c\x1b") == (3, "NUL, U+0000")
    assert control_character("\x1b[0m") == (1, "escape, U+001B")


def test_a_pipe_separated_file_is_read_with_its_delimiter(tmp_path: Path) -> None:
    path = tmp_path / "data.csv"
    path.write_text("input|target\nhello, world|hi\nb|c\n")
    found = inspect(path, filename="data.csv", max_rows=10)
    assert (found.format, found.delimiter, found.fields) == ("csv", "|", ["input", "target"])
    report = validate(
        path, fmt="csv", encoding="utf-8", input_field="input", target_field="target", max_rows=10
    )
    assert (report.valid_rows, report.problems) == (2, [])


def test_a_json_array_reads_on_after_a_deeply_nested_element(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    deep = "[" * 100_000 + "]" * 100_000
    path.write_text(f'[{deep}, {{"input": "a", "target": "b"}}, {deep}]')
    report = validate(
        path, fmt="json", encoding="utf-8", input_field="input", target_field="target", max_rows=10
    )
    assert report.valid_rows == 1
    assert [p.kind for p in report.problems] == ["malformed", "malformed"]
    assert all("nested too deeply" in p.message for p in report.problems)
