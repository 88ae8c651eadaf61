"""The strict environment parsers behind settings: malformed values stop start-up."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from lifecycle_app.env import env_bool, env_int, env_list, env_str

NAME = "LIFECYCLE_TEST_SETTING"


@pytest.fixture(autouse=True)
def _unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(NAME, raising=False)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("true", True),
        ("True", True),
        (" TRUE ", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        ("0", False),
        ("no", False),
        ("off", False),
    ],
)
def test_it_reads_a_boolean(raw: str, expected: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, raw)

    assert env_bool(NAME, not expected) is expected


@pytest.mark.parametrize("raw", ["maybe", "2", "tru", "y"])
def test_it_refuses_a_boolean_that_is_neither_true_nor_false(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured, match=f"{NAME}='{raw}' is neither true nor false"):
        env_bool(NAME, False)


@pytest.mark.parametrize("default", [True, False])
def test_it_uses_the_boolean_default_when_unset_or_empty(
    default: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert env_bool(NAME, default) is default
    monkeypatch.setenv(NAME, "")
    assert env_bool(NAME, default) is default


def test_it_reads_an_integer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "300")

    assert env_int(NAME, 120, minimum=10) == 300


def test_it_accepts_an_integer_equal_to_the_minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "10")

    assert env_int(NAME, 120, minimum=10) == 10


def test_it_uses_the_integer_default_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    assert env_int(NAME, 120) == 120
    monkeypatch.setenv(NAME, "")
    assert env_int(NAME, 120) == 120


@pytest.mark.parametrize("raw", ["abc", "1.5", "12s"])
def test_it_refuses_a_value_that_is_not_an_integer(
    raw: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured, match="is not an integer"):
        env_int(NAME, 120)


@pytest.mark.parametrize("raw", ["9", "0", "-5"])
def test_it_refuses_an_integer_below_the_minimum(raw: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, raw)

    with pytest.raises(ImproperlyConfigured, match="is below the minimum 10"):
        env_int(NAME, 120, minimum=10)


def test_it_reads_a_comma_separated_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, " example.com, ,www.example.com ,")

    assert env_list(NAME, ["localhost"]) == ["example.com", "www.example.com"]


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_it_uses_the_list_default_when_unset_or_blank(
    raw: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if raw is not None:
        monkeypatch.setenv(NAME, raw)

    assert env_list(NAME, ["localhost"]) == ["localhost"]


def test_it_treats_an_empty_string_as_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(NAME, "")

    assert env_str(NAME, "fallback") == "fallback"
    assert env_str(NAME) is None
