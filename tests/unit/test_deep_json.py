from __future__ import annotations

import json

from conveyor.deep_json import clipped


def test_integers_python_cannot_print_are_shown_as_a_note_and_the_others_as_they_are() -> None:
    """jsonb stores 1e5000 as 5001 digits: json.dumps (the CLI, the dashboard) refuses to print
    an integer of more than 4300 digits, so readers are shown a note in its place."""
    printable = 10**4300 - 1  # 4300 digits: the most str() prints by default
    value = {"big": [10**4300, -(10**5000)], "edge": printable, "flag": True, "n": 1}
    shown = clipped(value)
    assert shown["big"] == [
        "(an integer of about 4300 digits: not shown; read it with SQL)",
        "(an integer of about 5000 digits: not shown; read it with SQL)",
    ]
    assert shown["edge"] == printable
    assert shown["flag"] is True
    assert shown["n"] == 1
    json.dumps(shown)
    assert clipped(10**5000) == "(an integer of about 5000 digits: not shown; read it with SQL)"
    untouched = {"edge": printable, "list": [1, 2]}
    assert clipped(untouched) is untouched
