"""The CLI acts through conveyor.ops, as the HTTP API does, so that every entry point makes the
same checks: no command module calls a method of the Conveyor client except those on ALLOWED,
which are not operations on the job system.

The modules are read, not run: every name bound to a client (a parameter annotated
``Conveyor``, a parameter of a lambda given to ``with_client``, ``... as client`` of
``Conveyor(...)`` or ``ctx.client()``, or a name assigned one of those) is followed, and each
attribute read on it is listed."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import conveyor.cli
from conveyor.queue.client import Conveyor

CLI = Path(conveyor.cli.__file__).parent

# What a command may still use of the client directly, and why it is not an operation.
ALLOWED = {
    "db": "the connection pool: conveyor.ops.keys takes it (API keys live beside the job system)",
}


def _is_client_type(node: ast.expr | None) -> bool:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):  # a string annotation
        return node.value == "Conveyor"
    return (isinstance(node, ast.Name) and node.id == "Conveyor") or (
        isinstance(node, ast.Attribute) and node.attr == "Conveyor"
    )


def _makes_client(node: ast.expr) -> bool:
    """``Conveyor(...)`` or ``<anything>.client()``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    return _is_client_type(func) or (isinstance(func, ast.Attribute) and func.attr == "client")


def client_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            args = node.args
            for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs]:
                if _is_client_type(arg.annotation):
                    names.add(arg.arg)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "with_client":
            for given in node.args[1:]:
                if isinstance(given, ast.Lambda):
                    names.update(arg.arg for arg in given.args.args)
        elif isinstance(node, ast.With | ast.AsyncWith):
            for item in node.items:
                if _makes_client(item.context_expr) and isinstance(item.optional_vars, ast.Name):
                    names.add(item.optional_vars.id)
        elif isinstance(node, ast.Assign) and _makes_client(node.value):
            names.update(target.id for target in node.targets if isinstance(target, ast.Name))
    return names


def client_uses(source: str) -> Iterator[tuple[int, str]]:
    """(line, attribute) for each attribute read on a name bound to a client, and for each
    ``getattr`` on one (its attribute cannot be known here: listed as ``getattr``)."""
    tree = ast.parse(source)
    names = client_names(tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in names:
            yield node.lineno, node.attr
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and node.args
            and isinstance(node.args[0], ast.Name)
            and node.args[0].id in names
        ):
            yield node.lineno, "getattr"


def test_the_detector_finds_each_way_a_command_reaches_the_client() -> None:
    source = """
async def go(client: Conveyor) -> None:
    await client.enqueue("a")

def show(ctx):
    run_coroutine(with_client(ctx, lambda c: c.get_job(1)))
    run_coroutine(with_client(ctx, lambda c: getattr(c, "pause_schedule")("s")))

async def main(ctx):
    async with ctx.client() as opened:
        await opened.purge_dead(ids=[1])
    made = Conveyor("postgresql://")
    await made.retention()
    await ops.get_job(other, LOCAL_ADMIN, 1)
"""
    assert sorted(attr for _, attr in client_uses(source)) == [
        "enqueue",
        "get_job",
        "getattr",
        "purge_dead",
        "retention",
    ]


def test_no_command_calls_the_client_for_an_operation() -> None:
    modules = sorted(CLI.glob("*.py"))
    assert {path.name for path in modules} >= {"jobs.py", "dlq.py", "queues.py", "schedules.py", "keys.py"}
    found: dict[str, list[str]] = {}
    for path in modules:
        for line, attr in client_uses(path.read_text()):
            found.setdefault(attr, []).append(f"{path.name}:{line}")
    misused = {attr: where for attr, where in found.items() if attr not in ALLOWED}
    assert not misused, (
        "CLI commands call the client where conveyor.ops should be called (with LOCAL_ADMIN); "
        f"add the operation to conveyor.ops if it lacks one: {misused}"
    )
    # Not vacuous: keys.py reaches the pool through its client, and the detector sees it.
    assert any(where.startswith("keys.py:") for where in found.get("db", []))


def test_what_is_allowed_is_on_the_client() -> None:
    for attr in ALLOWED:
        assert hasattr(Conveyor, attr), attr
