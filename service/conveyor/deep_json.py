"""JSON text read without recursion, for what ``json.loads`` cannot read: text nested more
deeply than the interpreter's recursion limit. Pure: no I/O.

PostgreSQL's jsonb holds values nested thousands of levels deep (``conveyor.enqueue`` called
from SQL stores them; only the Python client and the HTTP API refuse them on the way in),
and ``json.loads`` raises RecursionError on them, which once failed every claim that picked
such a job up. This reader walks the text with an explicit stack instead. Its values are
those ``json.loads`` gives: strings and numbers are each decoded by ``json.loads`` itself.
It reads the text jsonb writes (always well formed): it checks nesting and members, and is
lenient about a stray comma, which that text never has.
"""

from __future__ import annotations

import decimal
import json
import re
import sys
from typing import Any

_TOKEN = re.compile(
    r"""[ \t\n\r]*(?:
        (?P<punct>[\[\]{}:,])
      | (?P<string>"(?:[^"\\]|\\.)*")
      | (?P<scalar>-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|true|false|null)
    )""",
    re.VERBOSE | re.DOTALL,
)
_TAIL = re.compile(r"[ \t\n\r]*")
_SCALARS = {"true": True, "false": False, "null": None}


def loads(text: str | bytes) -> Any:
    """The value of JSON ``text``, however deeply nested; ValueError if it is not JSON."""
    if isinstance(text, bytes | bytearray | memoryview):
        text = bytes(text).decode()
    stack: list[tuple[list[Any] | dict[str, Any], list[str | None]]] = []  # container, [key]
    root: list[Any] = []
    expecting_key = False
    position = 0
    while True:
        token = _TOKEN.match(text, position)
        if token is None:
            break
        position = token.end()
        punct, string, scalar = token.group("punct", "string", "scalar")
        container = stack[-1][0] if stack else None
        if punct in ("[", "{"):
            made: list[Any] | dict[str, Any] = [] if punct == "[" else {}
            _place(stack, root, made)
            stack.append((made, [None]))
            expecting_key = punct == "{"
        elif punct in ("]", "}"):
            if not stack or isinstance(container, list) != (punct == "]") or stack[-1][1][0] is not None:
                raise ValueError(f"JSON: unexpected {punct!r} at {token.start()}")
            stack.pop()
            expecting_key = False
        elif punct == ",":
            expecting_key = isinstance(container, dict)
        elif punct == ":":
            if not isinstance(container, dict) or stack[-1][1][0] is None:
                raise ValueError(f"JSON: unexpected ':' at {token.start()}")
        elif string is not None and expecting_key:
            stack[-1][1][0] = json.loads(string)
            expecting_key = False
        else:
            _place(stack, root, json.loads(string) if string is not None else _scalar(scalar))
        if not stack and root:
            break
    if stack or len(root) != 1 or _TAIL.fullmatch(text, position) is None:
        raise ValueError("JSON: the text is not one complete JSON value")
    return root[0]


def _scalar(text: str) -> Any:
    return _SCALARS[text] if text in _SCALARS else json.loads(text, parse_int=long_int)


def long_int(text: str) -> int:
    """``int(text)``, for any number of digits: past Python's limit on converting text to an
    integer (``sys.get_int_max_str_digits``, 4300 by default) through Decimal, which has none."""
    try:
        return int(text)
    except ValueError:
        return int(decimal.Decimal(text))


def _place(
    stack: list[tuple[list[Any] | dict[str, Any], list[str | None]]], root: list[Any], value: Any
) -> None:
    if not stack:
        root.append(value)
        return
    container, key = stack[-1]
    if isinstance(container, list):
        container.append(value)
    else:
        if key[0] is None:
            raise ValueError("JSON: a member without a name")
        container[key[0]] = value
        key[0] = None


SHOWN_LEVELS = 100  # levels of nesting the API, the CLI and the dashboard show of a stored value


def clipped(value: Any, levels: int = SHOWN_LEVELS) -> Any:
    """``value`` as shown to a reader: each list or object nested more than ``levels`` deep
    replaced by a string saying so. Encoders and templates recurse, and a value read from
    jsonb may be nested thousands of levels deep; the shallow part is what a person reads.
    So is an integer of more digits than Python prints (``sys.get_int_max_str_digits``,
    4300 by default; jsonb stores 1e5000 as 5001 digits): every encoder would fail on it.
    Walks with a stack of its own; returns ``value`` itself when nothing is clipped."""
    if not _to_clip(value, levels):
        return value
    note = f"(nested more than {levels} levels deep: not shown; read it with SQL)"
    top: list[Any] = [None]
    work: list[tuple[Any, list[Any] | dict[Any, Any], Any, int]] = [(value, top, 0, 0)]
    while work:
        item, parent, slot, depth = work.pop()
        if isinstance(item, list | dict):
            if depth >= levels:
                parent[slot] = note
                continue
            copy: list[Any] | dict[Any, Any] = (
                [None] * len(item) if isinstance(item, list) else dict.fromkeys(item)
            )
            parent[slot] = copy
            pairs = enumerate(item) if isinstance(item, list) else item.items()
            work.extend((child, copy, key, depth + 1) for key, child in pairs)
        elif _unprintable(item):
            parent[slot] = (
                f"(an integer of about {int(item.bit_length() * 0.30103)} digits: not shown; read it with SQL)"
            )
        else:
            parent[slot] = item
    return top[0]


def _to_clip(value: Any, levels: int) -> bool:
    work = [(value, 0)]
    while work:
        item, depth = work.pop()
        if isinstance(item, list | dict):
            if depth >= levels:
                return True
            children = item if isinstance(item, list) else item.values()
            work.extend((child, depth + 1) for child in children)
        elif _unprintable(item):
            return True
    return False


_PRINTABLE_BELOW: dict[int, int] = {}  # sys.get_int_max_str_digits() -> 10 ** it


def _unprintable(item: Any) -> bool:
    """An integer str() refuses: more digits than sys.get_int_max_str_digits() (0: no limit)."""
    if type(item) is not int:
        return False
    limit = sys.get_int_max_str_digits()
    if not limit or item.bit_length() <= limit * 3:  # 3 bits a digit at least: surely printable
        return False
    bound = _PRINTABLE_BELOW.get(limit)
    if bound is None:
        bound = _PRINTABLE_BELOW[limit] = 10**limit
    return abs(item) >= bound
