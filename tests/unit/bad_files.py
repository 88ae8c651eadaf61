"""Malformed uploads, each with the message a user must see and the line it names.

`bad_files()` maps a case name to (filename, bytes, expected message substring, expected
line or None). An empty message means the file must be accepted with no problems. The
files are read with MAX_ROWS as the row limit and mapped with the suggested fields, or
input/target where nothing is suggested.
"""

from __future__ import annotations

import gzip
import io
import json
import zipfile
from functools import cache
from typing import NamedTuple

MAX_ROWS = 1000
BOMB_BYTES = 50_000_000


class BadFile(NamedTuple):
    filename: str
    data: bytes
    message: str
    line: int | None


def jsonl(*records: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


def pair(i: int) -> dict[str, str]:
    return {"input": f"question {i}", "target": f"answer {i}"}


def zip_bomb(inner_name: str = "data.csv") -> bytes:
    """A real ZIP holding 50 MB of one repeated byte; the archive is ~50 KB."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive,
        archive.open(inner_name, "w", force_zip64=True) as member,
    ):
        block = b"a" * (1 << 20)
        for _ in range(BOMB_BYTES // len(block)):
            member.write(block)
    return buffer.getvalue()


def excel_like() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        archive.writestr("xl/workbook.xml", "<workbook/>")
    return buffer.getvalue()


@cache
def bad_files() -> dict[str, BadFile]:
    good = jsonl(pair(1), pair(2))
    chat_ok = {
        "messages": [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
        ]
    }
    chat_bad = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant"}]}
    cases = {
        "jsonl_truncated_line": BadFile(
            "data.jsonl",
            jsonl(pair(1), pair(2), pair(3))
            + b'{"input": "q", "target": "cut of\n'
            + jsonl(pair(5)),
            "Line 4: the JSON is cut off (unterminated string).",
            4,
        ),
        "jsonl_line_is_an_array": BadFile(
            "data.jsonl",
            jsonl(pair(1), ["question", "answer"], pair(3)),
            "Line 2: expected a JSON object ({...}), found a list",
            2,
        ),
        "bom_prefixed_valid_file": BadFile("data.jsonl", b"\xef\xbb\xbf" + good, "", None),
        "latin1_bytes": BadFile(
            "data.csv",
            "input,target\nhello,world\ncafé,crème brûlée\n".encode("latin-1"),
            "Line 3 is not valid UTF-8: byte 0xE9 at position 4 of the line",
            3,
        ),
        "windows1252_smart_quotes": BadFile(
            "data.jsonl",
            good + '{"input": "He said “hi”", "target": "ok"}\n'.encode("cp1252"),
            "It looks like Latin-1/Windows-1252 text (that byte is '“' there)",
            3,
        ),
        "csv_ragged_rows": BadFile(
            "data.csv",
            b"input,target\na,b\nc,d,e\nf,g\nh\n",
            "Line 3: 3 cells, but the header has 2 columns.",
            3,
        ),
        "csv_every_row_ragged": BadFile(
            "data.csv",
            b"input,target\na,b,c\nd,e,f\n",
            "Every row has a different number of cells than the header (2 columns)",
            None,
        ),
        "csv_missing_target_column": BadFile(
            "data.csv",
            b"input,notes\na,b\nc,d\n",
            "The file has no column 'target'; its columns are: input, notes.",
            None,
        ),
        "empty_file": BadFile("data.csv", b"", "The file is empty (0 bytes).", None),
        "whitespace_only": BadFile(
            "data.jsonl", b"  \n\n\t \r\n", "The file holds only whitespace", None
        ),
        "header_only": BadFile(
            "data.csv",
            b"input,target\r\n",
            "The file has a header row (input, target) but no data rows.",
            None,
        ),
        "ten_million_character_cell": BadFile(
            "data.csv",
            b"input,target\na,b\n" + b"x" * 10_000_000 + b",y\nc,d\n",
            "Line 3: a cell is longer than 100,000 characters (the limit).",
            3,
        ),
        "binary_named_jsonl": BadFile(
            "data.jsonl",
            bytes(range(256)) * 16,
            "This looks like a binary file (it contains NUL bytes), not a JSON Lines file",
            None,
        ),
        "zip_bomb_named_csv": BadFile(
            "data.csv",
            zip_bomb(),
            "This is a ZIP archive, not a CSV file: unzip it and upload the file inside.",
            None,
        ),
        "excel_workbook_named_csv": BadFile(
            "data.csv",
            excel_like(),
            "This is an Excel workbook, not a CSV file: save it as “CSV UTF-8”",
            None,
        ),
        "gzip_named_jsonl": BadFile(
            "data.jsonl",
            gzip.compress(good),
            "This is a gzip-compressed file, not a JSON Lines file: decompress it",
            None,
        ),
        "png_named_csv": BadFile(
            "data.csv",
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64),
            "This is a PNG image, not a CSV file",
            None,
        ),
        "utf16_text": BadFile(
            "data.csv",
            "input,target\na,b\n".encode("utf-16"),
            "This is UTF-16 text, not a CSV file: re-save it as UTF-8",
            None,
        ),
        "nested_object_as_text": BadFile(
            "data.jsonl",
            jsonl(pair(1), {"input": {"text": "hi"}, "target": "x"}),
            "Line 2: 'input' holds an object ({...}), but the input must be text.",
            2,
        ),
        "list_as_text": BadFile(
            "data.jsonl",
            jsonl(pair(1), pair(2), {"input": "q", "target": ["a", "b"]}),
            "Line 3: 'target' holds a list ([...]), but the target must be text.",
            3,
        ),
        "number_as_input": BadFile(
            "data.jsonl",
            jsonl(pair(1), {"input": 42, "target": "forty-two"}),
            "Line 2: 'input' holds a number (42), but the input must be text.",
            2,
        ),
        "empty_target": BadFile(
            "data.jsonl",
            jsonl(pair(1), {"input": "q", "target": "   "}),
            "Line 2: the target 'target' is empty.",
            2,
        ),
        "null_target": BadFile(
            "data.jsonl",
            jsonl(pair(1), {"input": "q", "target": None}),
            "Line 2: the target 'target' is empty (null).",
            2,
        ),
        "duplicate_rows": BadFile(
            "data.jsonl",
            jsonl(pair(1), pair(2), pair(1), pair(1)),
            "Line 3: the same input and target as line 1.",
            3,
        ),
        "json_object_not_array": BadFile(
            "data.json",
            json.dumps({"data": [pair(1), pair(2)]}, indent=2).encode(),
            "This JSON file holds one object, not an array of records",
            None,
        ),
        "json_array_with_a_non_object": BadFile(
            "data.json",
            b'[\n  {"input": "a", "target": "b"},\n  "oops",\n  {"input": "c", "target": "d"}\n]\n',
            "Line 3: expected a JSON object ({...}), found a string.",
            3,
        ),
        "json_array_of_strings": BadFile(
            "data.json",
            b'["a", "b"]',
            "The JSON array holds no objects",
            None,
        ),
        "truncated_json_array": BadFile(
            "data.json",
            b'[\n  {"input": "a", "target": "b"},\n  {"input": "c", "tar',
            "Line 3: the JSON array is cut off in the middle of a record (unterminated string).",
            3,
        ),
        "json_array_never_closed": BadFile(
            "data.json",
            b'[\n  {"input": "a", "target": "b"},\n  {"input": "c", "target": "d"}\n',
            "Line 4: the JSON array is cut off before its closing ']'.",
            4,
        ),
        "json_array_trailing_comma": BadFile(
            "data.json",
            b'[\n  {"input": "a", "target": "b"},\n]\n',
            "Line 3: there is a comma after the last record.",
            3,
        ),
        "chat_message_without_content": BadFile(
            "chat.jsonl",
            jsonl(chat_ok, chat_bad),
            "Line 2: message 2 in 'messages' has no 'content'.",
            2,
        ),
        "chat_messages_not_a_list": BadFile(
            "chat.jsonl",
            jsonl(chat_ok, {"messages": "user: hi"}),
            "Line 2: 'messages' holds a string, but it must be a list of messages",
            2,
        ),
        "more_rows_than_the_limit": BadFile(
            "data.jsonl",
            jsonl(*(pair(i) for i in range(MAX_ROWS + 1))),
            f"The file has more than {MAX_ROWS:,} rows; the limit is {MAX_ROWS:,}.",
            MAX_ROWS + 1,
        ),
        "unknown_field_mapping": BadFile(
            "data.jsonl",
            jsonl({"q": "a", "a": "b"}, {"q": "c", "a": "d"}),
            "None of the 2 rows can be used with this mapping. The first problem: Line 1: "
            "there is no 'input' field (this record has: q, a).",
            1,
        ),
        "tsv_ragged_rows": BadFile(
            "data.tsv",
            b"input\ttarget\na\tb\nc\n\nd\te\tf\n",
            "Line 3: 1 cell, but the header has 2 columns.",
            3,
        ),
        "unrecognisable_extension_and_content": BadFile(
            "notes.xyz",
            b"Dear team,\nplease find the data attached.\n",
            "Could not tell what format 'notes.xyz' is",
            None,
        ),
        "json_named_file_with_prose": BadFile(
            "data.json",
            b"hello there\n",
            "This file is not a JSON array of records: it starts with 'hello there",
            None,
        ),
        # Issue 17: each of these once crashed, was refused as a whole or said the wrong thing.
        "semicolon_separated_csv": BadFile(
            "data.csv", b"input;target\nhello, world;hi\nb;c\n", "", None
        ),
        "csv_one_column_colon_separated": BadFile(
            "data.csv",
            b"input:target\na:b\nc:d\n",
            "Only one column was found: the header is 'input:target'. The header seems to use "
            "':' between columns.",
            None,
        ),
        "utf16_le_without_bom": BadFile(
            "data.csv",
            "input,target\na,b\n".encode("utf-16-le"),
            "This looks like UTF-16 (LE) without a byte-order mark, not a CSV file: save it as "
            "UTF-8",
            None,
        ),
        "utf16_be_without_bom": BadFile(
            "data.jsonl",
            jsonl(pair(1)).decode().encode("utf-16-be"),
            "This looks like UTF-16 (BE) without a byte-order mark, not a JSON Lines file",
            None,
        ),
        "utf32_le_without_bom": BadFile(
            "data.csv",
            "input,target\na,b\n".encode("utf-32-le"),
            "This looks like UTF-32 (LE) without a byte-order mark",
            None,
        ),
        "csv_unclosed_quote": BadFile(
            "data.csv",
            b'input,target\na,b\n"c,d\ne,f\ng,h\n',
            'Line 3: a quote (") opens a cell here and is never closed, so everything from '
            "line 3 to the end of the file (line 5) was read as one cell.",
            3,
        ),
        "csv_unclosed_quote_over_the_cell_limit": BadFile(
            "data.csv",
            b'input,target\na,b\n"c,d\n'
            + b"".join(b"line %04d %s,yes\n" % (i, b"t" * 80) for i in range(1500)),
            "Line 3: a cell is longer than 100,000 characters (the limit). It runs on to line "
            '1056: a quote (") that opens a cell on line 3 is probably never closed.',
            3,
        ),
        "csv_quote_closed_too_late": BadFile(
            "data.csv",
            b'input,target\na,b\n"c,d\ne",f,g\nh,i\n',
            'Line 3: a quote (") opens a cell here and is not closed until line 4, so lines '
            "3–4 were read as one row of 3 cells, but the header has 2 columns.",
            3,
        ),
        "csv_nul_near_the_start": BadFile(
            "data.csv",
            b"input,target\na\x00b,c\nd,e\n",
            "Line 2: the input 'input' holds a control character (NUL, U+0000) at character 2 "
            "of the cell",
            2,
        ),
        "csv_nul_thousands_of_lines_in": BadFile(
            "data.csv",
            b"input,target\n"
            + b"".join(b"q%d,a%d\n" % (i, i) for i in range(2, 900))
            + b"x,y\x1bz\n",
            "Line 900: the target 'target' holds a control character (escape, U+001B) at "
            "character 2 of the cell",
            900,
        ),
        "jsonl_raw_nul_in_a_string": BadFile(
            "data.jsonl",
            good + b'{"input": "a\x00b", "target": "c"}\n',
            "Line 3: a control character (NUL) inside a string at column 13",
            3,
        ),
        "jsonl_escaped_nul_in_a_cell": BadFile(
            "data.jsonl",
            jsonl(pair(1), {"input": "ok", "target": "be\x00fore"}),
            "Line 2: the target 'target' holds a control character (NUL, U+0000) at character 3",
            2,
        ),
        "jsonl_deeply_nested_value": BadFile(
            "data.jsonl",
            good + b'{"input": ' + b"[" * 50_000 + b"]" * 50_000 + b', "target": "x"}\n',
            "Line 3: nested too deeply (more than 64 levels of arrays and objects).",
            3,
        ),
        "pasted_deeply_nested_line": BadFile(
            "pasted.txt",
            jsonl(pair(1))
            + b'{"input": "q", "target": '
            + b'{"a": ' * 30_000
            + b"1"
            + b"}" * 30_001
            + b"\n"
            + jsonl(pair(3)),
            "Line 2: nested too deeply (more than 64 levels of arrays and objects).",
            2,
        ),
        "json_array_deeply_nested_element": BadFile(
            "data.json",
            b'[\n  {"input": "a", "target": "b"},\n  '
            + b"[" * 50_000
            + b"]" * 50_000
            + b',\n  {"input": "c", "target": "d"}\n]\n',
            "Line 3: nested too deeply (more than 64 levels of arrays and objects).",
            3,
        ),
        "jsonl_repeated_key": BadFile(
            "data.jsonl",
            good + b'{"input": "a", "target": "b", "input": "c"}\n',
            'Line 3: the key "input" appears twice in one object (which value is meant?).',
            3,
        ),
        "json_array_repeated_key": BadFile(
            "data.json",
            b'[\n  {"input": "a", "target": "b"},\n  {"input": "c", "target": "d", "target": "e"},'
            b'\n  {"input": "f", "target": "g"}\n]\n',
            'Line 3: the key "target" appears twice in one object',
            3,
        ),
        "jsonl_line_over_the_record_cap": BadFile(
            "data.jsonl",
            good + b'{"input": "' + b"x" * 1_500_000 + b'", "target": "y"}\n',
            "Line 3: this line is over 1.4 million characters long, too long to be one record; "
            "no cell may be longer than 100,000 characters.",
            3,
        ),
        "chat_unknown_role": BadFile(
            "chat.jsonl",
            jsonl(
                chat_ok,
                {"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Yo"}]},
            ),
            "Line 2: message 2 in 'messages' has the role 'bot', which is not one of system, "
            "user, assistant.",
            2,
        ),
    }
    return cases


# The mapping form of a staged upload, filled in for files with "input" and "target" fields.
STAGED_MAPPING = {
    "name": "x",
    "input_field": "input",
    "target_field": "target",
    "seed": "1",
    "train": "0.8",
    "validation": "0.1",
    "test": "0.1",
}
