"""Text PostgreSQL can store: no NUL character, and valid UTF-8. Pure: no I/O.

A Python ``str`` may hold both: a NUL, and a lone surrogate (``"\\ud800"``, which a JSON
``"\\ud800"`` escape decodes to, so any HTTP body can carry one). psycopg cannot send a
lone surrogate at all (UnicodeEncodeError) and PostgreSQL refuses a NUL in text: checked
here first, every text value Conveyor takes from a caller is a clear refusal instead.
"""

from __future__ import annotations


def unstorable(value: str) -> str | None:
    """Why PostgreSQL cannot store ``value`` as text, or None when it can."""
    if "\x00" in value:
        return "it holds a NUL character"
    if not value.isascii():
        try:
            value.encode()
        except UnicodeEncodeError:
            return "it holds a lone surrogate, which is not valid text"
    return None
