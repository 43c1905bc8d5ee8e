"""JSON text that PostgreSQL's jsonb accepts, and JSON read back from it.

Arguments, results and errors are encoded here. The rules are the standard library's
``json`` with ``allow_nan=False``: a value json refuses (NaN, infinities, sets, bytes,
datetimes, other objects) is refused, a lone surrogate is refused, and so is a NUL
character, which jsonb cannot store.

Where orjson is installed (a dependency on CPython) a flat object of plain values (str, int,
finite float, bool, None under str keys: what most job arguments are) is encoded by orjson,
the cheaper encoder; anything else, and anything orjson refuses, takes the json path, so
what is accepted and how it is refused do not depend on orjson. Reading is the same: orjson
unless the text holds a run of 20 digits (orjson reads an integer past 64 bits as a float)
or orjson refuses it (json reads 1e400 as inf, a lone surrogate as itself).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from . import deep_json

try:
    import orjson
except ImportError:  # pragma: no cover - orjson is a dependency on CPython
    orjson = None  # type: ignore[assignment]

# \u0000 as JSON writes it: preceded by an even number of backslashes (an odd number would
# make it the literal text "\u0000", which PostgreSQL stores fine).
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# One encoder for every value: json.dumps with options builds a new one on each call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False)
_PLAIN = frozenset({str, int, bool, type(None)})

_LONG_DIGITS = re.compile(r"[0-9]{20}")
_LONG_DIGITS_BYTES = re.compile(rb"[0-9]{20}")


def loads(text: str | bytes) -> Any:
    """JSON text read back as json.loads reads it (psycopg's loader for Conveyor's connections)."""
    if orjson is not None:
        long = _LONG_DIGITS_BYTES.search(text) if isinstance(text, bytes) else _LONG_DIGITS.search(text)
        if long is None:
            try:
                return orjson.loads(text)
            except orjson.JSONDecodeError:
                pass
    try:
        return json.loads(text)
    except RecursionError:
        return deep_json.loads(text)  # nested past the recursion limit: jsonb holds such values
    except json.JSONDecodeError:
        raise
    except ValueError:
        # An integer of more digits than Python converts from text (4300 by default): jsonb
        # holds numbers of any length (conveyor.enqueue from SQL stores them), and refusing one
        # here once failed every claim that picked such a job up.
        try:
            return json.loads(text, parse_int=deep_json.long_int)
        except RecursionError:
            return deep_json.loads(text)


def dumps(value: Any) -> str:
    """``value`` as JSON text for jsonb; TypeError or ValueError if it has none."""
    return dumps_sized(value)[0]


def dumps_sized(value: Any) -> tuple[str, int]:
    """JSON text for jsonb and its size in bytes."""
    if orjson is not None and type(value) is dict and _flat_and_plain(value):
        try:
            encoded = orjson.dumps(value)
        except orjson.JSONEncodeError:
            pass  # a lone surrogate, an integer past 64 bits: json says why, or takes it
        else:
            text = encoded.decode()
            _refuse_nul(text)
            return text, len(encoded)
    try:
        text = _ENCODER.encode(value)
    except RecursionError:
        raise ValueError("it is nested too deeply to be encoded as JSON") from None
    size = len(text.encode())  # a lone surrogate raises UnicodeEncodeError, a ValueError
    _refuse_nul(text)
    return text, size


def _flat_and_plain(value: dict[Any, Any]) -> bool:
    for key, item in value.items():
        kind = type(item)
        if type(key) is not str or not (kind in _PLAIN or (kind is float and math.isfinite(item))):
            return False
    return True


def _refuse_nul(text: str) -> None:
    if "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError("it contains a NUL character (\\u0000), which PostgreSQL cannot store")
