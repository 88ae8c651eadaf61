"""Dataset upload checks: recognising, validating, cleaning and splitting files (no Django)."""

from __future__ import annotations

import gzip
import io
import json
import random
import time
import tracemalloc
import zipfile
import zlib
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.unit.bad_files import MAX_ROWS, bad_files, jsonl, pair
from workers.ml.data import json_array, validation
from workers.ml.data.records import DatasetRejected, Problem
from workers.ml.data.validation import inspect, read_clean, validate

CASES = bad_files()


def write(tmp_path: Path, name: str, data: bytes | str) -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def check(path: Path, **options: Any) -> validation.ValidationReport:
    """Inspect the file, then validate it with the suggested mapping."""
    found = inspect(path, filename=path.name, max_rows=MAX_ROWS)
    return validate(
        path,
        fmt=found.format,
        encoding=found.encoding,
        input_field=found.suggested_input or "input",
        target_field=found.suggested_target or "target",
        max_rows=MAX_ROWS,
        **options,
    )


def clean(path: Path, out: Path, **options: Any) -> dict[str, int]:
    settings: dict[str, Any] = {
        "fmt": "jsonl",
        "encoding": "utf-8",
        "input_field": "input",
        "target_field": "target",
        "seed": 7,
        "fractions": (0.8, 0.1, 0.1),
        "stratify": False,
        "max_rows": 100_000,
    }
    return validation.write_clean(path, out, **(settings | options))


# --- Malformed files ------------------------------------------------------------------


def test_the_catalogue_covers_at_least_22_distinct_malformed_inputs() -> None:
    assert len(CASES) >= 22
    assert len({case.data for case in CASES.values()}) == len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_it_names_the_problem_and_its_line_for_each_malformed_file(
    tmp_path: Path, name: str
) -> None:
    filename, data, message, line = CASES[name]
    path = write(tmp_path, filename, data)
    try:
        report = check(path)
    except DatasetRejected as exc:
        assert message, f"an acceptable file was rejected: {exc}"
        assert message in str(exc)
        if line is not None:
            assert any(p.line == line for p in exc.problems) or f"Line {line}" in str(exc)
        return
    if not message:
        assert report.problems == [] and report.valid_rows == report.total_rows > 0
        return
    matching = [p for p in report.problems if message in p.message]
    assert matching, f"no problem says {message!r}: {report.problems}"
    assert line is None or matching[0].line == line
    assert report.valid_rows > 0  # the other rows survive


def test_it_accepts_a_bom_prefixed_file_and_says_so(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", b"\xef\xbb\xbfinput,target\nhello,world\n")
    found = inspect(path, filename="data.csv", max_rows=10)
    assert (found.had_bom, found.encoding, found.fields) == (True, "utf-8", ["input", "target"])
    plain = write(tmp_path, "plain.csv", b"input,target\nhello,world\n")
    assert inspect(plain, filename="plain.csv", max_rows=10).had_bom is False


def test_it_rejects_a_zip_bomb_at_once_without_decompressing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the upload was decompressed")

    for module, name in [
        (zlib, "decompress"),
        (zlib, "decompressobj"),
        (zipfile, "ZipFile"),
        (gzip, "open"),
        (gzip, "decompress"),
    ]:
        monkeypatch.setattr(module, name, refuse)
    bomb = CASES["zip_bomb_named_csv"].data
    assert len(bomb) < 1_000_000  # a real archive of 50 MB
    path = write(tmp_path, "data.csv", bomb)
    start = time.perf_counter()
    with pytest.raises(DatasetRejected, match="This is a ZIP archive, not a CSV file"):
        inspect(path, filename="data.csv", max_rows=MAX_ROWS)
    assert time.perf_counter() - start < 0.2


def test_it_reports_every_ragged_line_of_a_csv(tmp_path: Path) -> None:
    case = CASES["csv_ragged_rows"]
    report = check(write(tmp_path, case.filename, case.data))
    assert [(p.line, p.kind) for p in report.problems] == [(3, "ragged"), (5, "ragged")]
    assert (report.valid_rows, report.dropped) == (2, {"ragged": 2})


def test_it_counts_lines_where_a_quoted_csv_cell_spans_several(tmp_path: Path) -> None:
    data = 'input,target\n"two\nlines",a\n"x",""\n'
    report = check(write(tmp_path, "data.csv", data))
    assert report.problems == [Problem(4, "empty_field", "Line 4: the target 'target' is empty.")]


def test_it_reports_a_jsonl_line_too_long_to_hold_and_reads_on(tmp_path: Path) -> None:
    huge = json.dumps({"input": "x" * 1_100_000, "target": "y"})
    path = write(tmp_path, "data.jsonl", jsonl(pair(1)) + huge.encode() + b"\n" + jsonl(pair(3)))
    report = validate(
        path,
        fmt="jsonl",
        encoding="utf-8",
        input_field="input",
        target_field="target",
        max_rows=10,
        max_cell_chars=10,
    )
    assert [(p.line, p.kind) for p in report.problems] == [(2, "too_long")]
    assert report.valid_rows == 2


# --- Recognising files ----------------------------------------------------------------

FORMAT_SAMPLES = {
    "data.jsonl": (jsonl(pair(1)), "jsonl"),
    "data.ndjson": (jsonl(pair(1)), "jsonl"),
    "data.json": (json.dumps([pair(1)]).encode(), "json"),
    "lines.json": (jsonl(pair(1), pair(2)), "jsonl"),
    "data.csv": (b"input,target\na,b\n", "csv"),
    "tabs.csv": (b"input\ttarget\na\tb\n", "tsv"),
    "data.tsv": (b"input\ttarget\na\tb\n", "tsv"),
    "pasted.txt": (b"  \n" + jsonl(pair(1)), "jsonl"),
    "array.txt": (b"\n [" + json.dumps(pair(1)).encode() + b"]", "json"),
    "comma.txt": (b"input,target\na,b\n", "csv"),
    "tab.txt": (b"input\ttarget\na\tb\n", "tsv"),
    "no_extension": (b"input,target\na,b\n", "csv"),
}


@pytest.mark.parametrize("filename", sorted(FORMAT_SAMPLES))
def test_it_recognises_the_format_by_extension_and_content(tmp_path: Path, filename: str) -> None:
    data, expected = FORMAT_SAMPLES[filename]
    found = inspect(write(tmp_path, filename, data), filename=filename, max_rows=10)
    assert found.format == expected
    assert (found.suggested_input, found.suggested_target) == ("input", "target")


def test_it_suggests_fields_and_previews_the_first_rows_truncated(tmp_path: Path) -> None:
    records = [
        {"id": i, "Dialogue": "d" * (500 if i == 0 else 5), "summary": f"s{i}", "meta": {"k": i}}
        for i in range(12)
    ]
    records[3]["extra"] = True
    found = inspect(write(tmp_path, "d.jsonl", jsonl(*records)), filename="d.jsonl", max_rows=20)
    assert found.fields == ["id", "Dialogue", "summary", "meta", "extra"]
    assert (found.suggested_input, found.suggested_target, found.is_chat) == (
        "Dialogue",
        "summary",
        False,
    )
    assert found.rows == 12 and len(found.preview) == 10
    assert found.preview[0]["Dialogue"] == "d" * 299 + "…"
    assert found.preview[1] == {"id": "1", "Dialogue": "ddddd", "summary": "s1", "meta": '{"k": 1}'}


def test_it_recognises_chat_records_and_maps_them_to_input_and_target(tmp_path: Path) -> None:
    record = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "Bye"},
            {"role": "assistant", "content": "Goodbye."},
        ]
    }
    path = write(tmp_path, "chat.jsonl", jsonl(record))
    found = inspect(path, filename="chat.jsonl", max_rows=10)
    assert (found.is_chat, found.suggested_input, found.suggested_target) == (
        True,
        "messages",
        "messages",
    )
    out = tmp_path / "clean.jsonl"
    clean(path, out, input_field="messages", target_field="messages", fractions=(1, 0, 0))
    assert list(read_clean(out)) == [
        {
            "input": "system: Be brief.\nuser: Hi\nassistant: Hello!\nuser: Bye",
            "target": "Goodbye.",
            "split": "train",
            "line": 1,
        }
    ]


def test_it_finds_json_array_records_across_buffer_boundaries(tmp_path: Path) -> None:
    records: list[Any] = [
        {"input": f"row {i} " + 'é\\"{[' * (i % 997), "target": str(i)} for i in range(3000)
    ]
    records[2500] = 12.5  # a non-object element, deep in the file
    text = json.dumps(records, indent=1, ensure_ascii=False)
    path = write(tmp_path, "data.json", text)
    expected_line = text[: text.index("\n 12.5")].count("\n") + 2
    report = validate(
        path,
        fmt="json",
        encoding="utf-8",
        input_field="input",
        target_field="target",
        max_rows=3000,
    )
    assert report.total_rows == 3000 and report.valid_rows == 2999
    assert [(p.line, p.kind) for p in report.problems] == [(expected_line, "malformed")]
    out = tmp_path / "clean.jsonl"
    clean(path, out, fmt="json")
    assert sorted(r["target"] for r in read_clean(out)) == sorted(
        r["target"] for r in records if isinstance(r, dict)
    )


class ShortReads(io.StringIO):
    """A text file whose reads stop early, at random, like a slow pipe."""

    def __init__(self, text: str, rng: random.Random) -> None:
        super().__init__(text)
        self.rng = rng

    def read(self, size: int | None = -1) -> str:
        return super().read(min(size or 0, self.rng.randint(1, 40)))


def test_it_splits_json_arrays_exactly_as_json_loads_whatever_the_reads(tmp_path: Path) -> None:
    rng = random.Random(1)
    alphabet = 'a "\\{}[],é\n\t😀:1-\u2028'

    def value(depth: int) -> Any:
        kind = rng.randrange(7 if depth < 3 else 4)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.choice([0, -1, 12345678901234567890, 1.5e-7, 3.0])
        if kind in (2, 3):
            return "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        if kind == 4:
            return [value(depth + 1) for _ in range(rng.randrange(4))]
        return {f"k{i}": value(depth + 1) for i in range(rng.randrange(4))}

    for _ in range(500):
        elements = [
            value(1) if rng.random() < 0.2 else {"input": value(2), "target": "x"}
            for _ in range(rng.randrange(8))
        ]
        text = json.dumps(
            elements,
            indent=rng.choice([None, 0, 2]),
            ensure_ascii=rng.random() < 0.5,
            separators=rng.choice([None, (" ,\r\n ", " :\t"), (",", ":")]),
        )
        reader = json_array._JsonArray(ShortReads(text, rng), 10**6, 1000, tmp_path / "x")
        rows = list(reader.rows())
        assert len(rows) == len(elements)
        assert [
            r.data if isinstance(e, dict) else e for r, e in zip(rows, elements, strict=True)
        ] == elements
        assert [r.problem is None for r in rows] == [isinstance(e, dict) for e in elements]


def test_it_skips_a_json_record_too_long_to_hold_and_reads_on(tmp_path: Path) -> None:
    tricky = '}]{["\\\\' * 200_000  # brackets and escapes inside one string
    records = [pair(1), {"input": tricky, "nested": [{"a": [1, {}]}], "target": "t"}, pair(3)]
    path = write(tmp_path, "data.json", "[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]")
    report = validate(
        path,
        fmt="json",
        encoding="utf-8",
        input_field="input",
        target_field="target",
        max_rows=10,
        max_cell_chars=1000,
    )
    assert [(p.line, p.kind) for p in report.problems] == [(3, "too_long")]
    assert report.valid_rows == 2


# --- Validation -----------------------------------------------------------------------


def test_it_summarises_the_dropped_rows(tmp_path: Path) -> None:
    rows = [pair(i) for i in range(148)] + [pair(0), pair(1), {"input": "q", "target": ""}]
    data = jsonl(*rows) + b'{"input": "cut\n'
    report = check(write(tmp_path, "data.jsonl", data))
    assert (report.total_rows, report.valid_rows) == (152, 148)
    assert report.dropped == {"duplicate": 2, "empty_field": 1, "malformed": 1}
    assert report.summary() == (
        "148 valid, 4 dropped: 2 duplicate rows, 1 row with an empty field, 1 malformed line."
    )
    assert report.labels is None


def test_it_accepts_numbers_and_booleans_as_labels_only_for_classification(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "data.jsonl",
        jsonl(
            {"text": "good", "label": 1},
            {"text": "bad", "label": 0},
            {"text": "fine", "label": " 1 "},
            {"text": "meh", "label": True},
        ),
    )
    options: dict[str, Any] = {
        "fmt": "jsonl",
        "encoding": "utf-8",
        "input_field": "text",
        "target_field": "label",
        "max_rows": 10,
    }
    labelled = validate(path, classification=True, **options)
    assert labelled.labels == {"1": 2, "0": 1, "true": 1}
    generative = validate(path, **options)
    assert generative.dropped == {"wrong_type": 3}
    assert generative.problems[0].message == (
        "Line 1: 'label' holds a number (1), but the target must be text."
    )


def test_it_rejects_a_mapping_to_a_csv_column_that_does_not_exist(tmp_path: Path) -> None:
    path = write(tmp_path, "data.csv", "question,reply\na,b\n")
    with pytest.raises(DatasetRejected, match=r"no column 'prompt'; its columns are: question"):
        validate(
            path,
            fmt="csv",
            encoding="utf-8",
            input_field="prompt",
            target_field="reply",
            max_rows=10,
        )


def test_it_keeps_only_the_first_200_problems_but_counts_them_all(tmp_path: Path) -> None:
    rows = [pair(1)] + [{"input": f"q{i}", "target": ""} for i in range(300)]
    report = check(write(tmp_path, "data.jsonl", jsonl(*rows)))
    assert report.dropped == {"empty_field": 300}
    assert len(report.problems) == 200 and report.problems[-1].line == 201


def test_it_reports_progress_while_validating(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", jsonl(*(pair(i) for i in range(2500))))
    seen: list[int] = []
    report = validate(
        path,
        fmt="jsonl",
        encoding="utf-8",
        input_field="input",
        target_field="target",
        max_rows=5000,
        on_progress=seen.append,
    )
    assert seen == [1000, 2000, 2500] and report.valid_rows == 2500


def test_it_refuses_encodings_other_than_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", jsonl(pair(1)))
    with pytest.raises(ValueError, match="Only UTF-8"):
        validate(
            path,
            fmt="jsonl",
            encoding="latin-1",
            input_field="input",
            target_field="target",
            max_rows=10,
        )


# --- Cleaning and splitting -----------------------------------------------------------


def labelled_file(tmp_path: Path) -> Path:
    sizes = {"pos": 50, "neg": 31, "neutral": 9}
    rows = [
        {"input": f"{label} example {i}", "target": label}
        for label, n in sizes.items()
        for i in range(n)
    ]
    rows.insert(5, {"input": "", "target": "pos"})  # dropped, not split
    return write(tmp_path, "labelled.jsonl", jsonl(*rows))


def test_it_writes_only_valid_rows_and_byte_identical_output_for_the_same_seed(
    tmp_path: Path,
) -> None:
    path = labelled_file(tmp_path)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    counts = clean(path, first, seed=3)
    assert clean(path, second, seed=3) == counts == {"train": 72, "validation": 9, "test": 9}
    assert first.read_bytes() == second.read_bytes()
    lines = [r["line"] for r in read_clean(first)]
    assert lines == sorted(lines) and 6 not in lines and len(lines) == 90
    assert not list(tmp_path.glob(".*.tmp"))


def test_it_assigns_splits_differently_for_another_seed(tmp_path: Path) -> None:
    path = labelled_file(tmp_path)
    one, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert clean(path, one, seed=1) == clean(path, other, seed=2)
    assignment = [[r["split"] for r in read_clean(out)] for out in (one, other)]
    assert assignment[0] != assignment[1]


def test_it_splits_each_label_in_proportion_when_stratifying(tmp_path: Path) -> None:
    path = labelled_file(tmp_path)
    out = tmp_path / "clean.jsonl"
    fractions = (0.7, 0.2, 0.1)
    counts = clean(path, out, fractions=fractions, stratify=True)
    per_split = Counter((r["target"], r["split"]) for r in read_clean(out))
    for label, n in {"pos": 50, "neg": 31, "neutral": 9}.items():
        for split, fraction in zip(validation.SPLITS, fractions, strict=True):
            assert abs(per_split[label, split] - fraction * n) <= 1, (label, split)
    assert sum(counts.values()) == 90
    assert counts == {s: len(list(read_clean(out, s))) for s in validation.SPLITS}


@pytest.mark.parametrize(
    "fractions", [(0.8, 0.1, 0.05), (0.8, 0.3, -0.1), (1.0, 0.0), (0.5, 0.5, 0.1)]
)
def test_it_refuses_fractions_that_do_not_sum_to_one(
    tmp_path: Path, fractions: tuple[float, float, float]
) -> None:
    path = labelled_file(tmp_path)
    with pytest.raises(ValueError, match="sum to 1"):
        clean(path, tmp_path / "out.jsonl", fractions=fractions)
    assert not (tmp_path / "out.jsonl").exists()


def test_it_refuses_to_write_a_file_with_no_valid_rows(tmp_path: Path) -> None:
    path = write(tmp_path, "data.jsonl", jsonl({"input": "a", "target": ""}))
    with pytest.raises(DatasetRejected, match="None of the 1 rows can be used"):
        clean(path, tmp_path / "out.jsonl")
    assert not list(tmp_path.glob("*out.jsonl*"))


# --- Memory -----------------------------------------------------------------------------


def dialogue_file(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / f"rows{rows}.jsonl"
    with path.open("w") as f:
        for i in range(rows):
            record = {
                "dialogue": f"#Person1#: Hello, this is call {i}. " * 12,
                "summary": f"Person1 calls about case {i}.",
            }
            f.write(json.dumps(record) + "\n")
    return path


def peak_bytes(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_rows_read(tmp_path: Path) -> None:
    small, large = dialogue_file(tmp_path, 10_000), dialogue_file(tmp_path, 50_000)

    def run_inspect(path: Path) -> Any:
        return lambda: inspect(path, filename=path.name, max_rows=100_000)

    def run_validate(path: Path) -> Any:
        return lambda: validate(
            path,
            fmt="jsonl",
            encoding="utf-8",
            input_field="dialogue",
            target_field="summary",
            max_rows=100_000,
        )

    inspect_small, inspect_large = peak_bytes(run_inspect(small)), peak_bytes(run_inspect(large))
    assert inspect_large < 2 * inspect_small
    validate_small = peak_bytes(run_validate(small))
    validate_large = peak_bytes(run_validate(large))
    # Exact duplicate detection must remember every row: a 16-byte digest and a line in
    # 20-byte slots, at most 2/3 full, the old table alive while it doubles. That is the
    # only growth allowed, under 100 bytes a row; holding the rows would cost > 500.
    assert (validate_large - validate_small) / 40_000 < 100
    assert validate_large < large.stat().st_size / 5
