"""Strict JSON: repeated keys and deep nesting are refused with a message, never a crash."""

from __future__ import annotations

import json

import pytest

from workers.ml.data.strict_json import DECODER, MAX_DEPTH, JsonRefused, loads


def test_it_parses_ordinary_json_like_json_does() -> None:
    text = '{"messages": [{"role": "user", "content": "hi"}], "n": 1.5, "ok": true}'

    assert loads(text) == json.loads(text)
    assert loads(text.encode()) == json.loads(text)


def test_it_refuses_a_key_that_appears_twice_and_names_it() -> None:
    with pytest.raises(JsonRefused, match='"input" appears twice'):
        loads('{"input": "a", "target": "b", "input": "c"}')


def test_it_refuses_a_repeated_key_in_a_nested_object() -> None:
    with pytest.raises(JsonRefused, match='"role" appears twice'):
        loads('{"messages": [{"role": "user", "role": "assistant"}]}')


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 5_000, 100_000])
def test_it_refuses_deep_nesting_with_the_limit_instead_of_crashing(depth: int) -> None:
    text = "[" * depth + "]" * depth

    with pytest.raises(JsonRefused, match=f"nested too deeply \\(more than {MAX_DEPTH} levels"):
        loads(text)
    with pytest.raises(JsonRefused, match="nested too deeply"):
        DECODER.raw_decode('{"a": ' + "[" * depth + "]" * depth + "}")


def test_nesting_up_to_the_limit_is_fine() -> None:
    assert loads("[" * MAX_DEPTH + "]" * MAX_DEPTH) is not None


def test_bad_syntax_is_still_a_decode_error() -> None:
    with pytest.raises(json.JSONDecodeError):
        loads('{"a": ')
