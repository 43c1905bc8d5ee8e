"""conveyor.jsonb: the orjson path and the json path accept and refuse the same values."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import jsonb

PROPERTY = settings(database=None, derandomize=True, deadline=None, max_examples=300)

plain = (
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
)
flat = st.dictionaries(st.text(), plain, max_size=8)


def by_json(value: Any) -> tuple[str, int]:
    """What the json path alone gives."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text, len(text.encode())


@PROPERTY
@given(flat)
def test_flat_plain_objects_read_back_as_json_writes_them(value: dict[str, Any]) -> None:
    try:
        expected_text, _ = by_json(value)
    except ValueError:  # a lone surrogate: both refuse (below)
        with pytest.raises(ValueError, match="surrogates not allowed"):
            jsonb.dumps_sized(value)
        return
    if "\\u0000" in expected_text:
        with pytest.raises(ValueError, match="NUL character"):
            jsonb.dumps_sized(value)
        return
    text, size = jsonb.dumps_sized(value)
    assert json.loads(text) == json.loads(expected_text)
    assert size == len(text.encode())


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70},  # past 64 bits: orjson refuses, json writes it
        {"nested": {"a": [1, 2.5, None]}},
        {"tuple": (1, 2)},
        {1: "int key"},  # json turns the key into "1"
    ],
    ids=["big int", "nested", "tuple", "int key"],
)
def test_what_orjson_leaves_to_json_comes_out_as_json_writes_it(value: dict[Any, Any]) -> None:
    assert jsonb.dumps(value) == by_json(value)[0]


@pytest.mark.parametrize(
    ("value", "error"),
    [
        ({"x": float("nan")}, "Out of range float values are not JSON compliant"),
        ({"x": float("inf")}, "Out of range float values are not JSON compliant"),
        ({"x": "\ud800"}, "surrogates not allowed"),
        ({"x": "a\x00b"}, "NUL character"),
        ({"x": {1, 2}}, "Object of type set is not JSON serializable"),
        ({"x": b"bytes"}, "Object of type bytes is not JSON serializable"),
    ],
    ids=["nan", "inf", "surrogate", "nul", "set", "bytes"],
)
def test_refusals_are_json_refusals(value: dict[str, Any], error: str) -> None:
    with pytest.raises((TypeError, ValueError), match=error):
        jsonb.dumps(value)


def test_a_flat_object_of_plain_values_takes_orjson() -> None:
    """Not observable in the text (readers cannot tell): checked on the predicate instead."""
    if jsonb.orjson is None:
        pytest.skip("orjson is not installed on this interpreter")
    assert jsonb._flat_and_plain({"a": 1, "b": "x", "c": None, "d": 1.5, "e": True})
    assert not jsonb._flat_and_plain({"a": float("nan")})
    assert not jsonb._flat_and_plain({"a": [1]})
    assert not jsonb._flat_and_plain({1: "a"})


@pytest.mark.parametrize(
    "text",
    [
        '{"a": 1, "b": [true, null, "x"], "c": 1.5}',
        '{"big": 123456789012345678901234567890}',  # orjson would give a float
        '{"huge": 1e400}',  # orjson refuses; json reads inf
        '["\\ud800"]',  # a lone surrogate, as jsonb may hold it escaped
        '{"id": "12345678901234567890123"}',  # digits in a string: read either way, the same
    ],
    ids=["plain", "big int", "huge float", "surrogate", "digits in a string"],
)
@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_loads_reads_as_json_reads(text: str, as_bytes: bool) -> None:
    assert jsonb.loads(text.encode() if as_bytes else text) == json.loads(text)


@pytest.mark.parametrize("depth", [1, 5000])
def test_integers_past_pythons_digit_limit_are_read_as_integers(depth: int) -> None:
    """jsonb prints 1e5000 as 5001 digits; json.loads refuses more than 4300 by default (and
    once, on the claim path, that refusal failed every claim that picked such a job up)."""
    text = "[" * depth + "1" + "0" * 5000 + ", -7" + "0" * 6000 + "]" * depth
    value = jsonb.loads(text)
    for _ in range(depth - 1):
        value = value[0]
    assert value == [10**5000, -7 * 10**6000]
    with pytest.raises(ValueError, match=r"Expecting|JSON"):
        jsonb.loads("[1" + "0" * 5000 + ",]")
