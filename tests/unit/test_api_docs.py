"""docs/api.md lists every endpoint of the route table, with the role it needs, and no other;
and every problem type the API can answer with."""

from __future__ import annotations

import re

from conveyor.api.endpoints import GROUPS
from conveyor.api.problems import KINDS

from ..helpers import REPO

ROW = re.compile(r"^\| `(GET|POST|PUT|PATCH|DELETE) (/api/v1/\S+)` \| (viewer|operator|admin) \|", re.M)


def test_the_endpoint_tables_match_the_route_table() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    documented = {(method, path): role for method, path, role in ROW.findall(text)}
    declared = {
        (e.method, "/api/v1" + e.path): e.role.label
        for g in GROUPS
        for e in g.endpoints
        if e.role is not None
    }
    assert documented == declared


def test_every_problem_type_is_documented() -> None:
    text = (REPO / "docs" / "api.md").read_text()
    for kind in KINDS:
        assert re.search(rf"`{re.escape(kind.slug)}`[^|]*\| {kind.status} \|", text), kind
