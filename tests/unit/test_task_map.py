"""The mapping file of `conveyor import procrastinate`: what each source job becomes, and a
clear refusal of a file that cannot be used."""

from __future__ import annotations

import pytest

from conveyor.task_map import Target, TaskMapError, parse_task_map

TOML = """
[tasks]
"app.send" = "send_email"
"app.export" = { task = "export_csv", queue = "exports" }

[queues]
urgent = "mail-urgent"

[priorities]
"10" = "critical"
"-10" = 2
"""


def test_tasks_queues_and_priorities_map_as_documented() -> None:
    task_map = parse_task_map(TOML, name="tasks.toml")
    send, export = task_map.target("app.send"), task_map.target("app.export")
    assert (send, export) == (Target("send_email"), Target("export_csv", "exports"))
    assert task_map.target("app.other") is None
    # The task entry's queue, else the source queue's rename, else the Conveyor task's own.
    assert task_map.queue(export, "urgent") == "exports"
    assert task_map.queue(send, "urgent") == "mail-urgent"
    assert task_map.queue(send, "default") is None
    # Listed priorities as listed; else 0 is the task's own, above 0 high, below 0 low.
    assert [task_map.priority(p) for p in (10, -10, 0, 1, 99, -1)] == [0, 2, None, 1, 1, 3]


def test_json_reads_the_same_as_toml() -> None:
    text = '{"tasks": {"app.send": "send_email", "app.export": {"task": "export_csv", "queue": "exports"}},'
    text += ' "queues": {"urgent": "mail-urgent"}, "priorities": {"10": "critical", "-10": 2}}'
    assert parse_task_map(text, name="tasks.json") == parse_task_map(TOML, name="tasks.toml")


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("m.toml", "[tasks", "m.toml: not valid TOML"),
        ("m.json", "{", "m.json: not valid JSON"),
        ("m.json", "[]", "m.json: must be a table"),
        ("m.toml", "", "m.toml: no 'tasks' table"),
        ("m.toml", "[tasks]", "m.toml: the 'tasks' table is empty"),
        ("m.toml", "tasks = 3", "m.toml: 'tasks' must be a table"),
        ("m.toml", '[tasks]\na = ""', "m.toml: tasks.\"a\": 'task' must be a Conveyor task name"),
        ("m.toml", "[tasks]\na = 1", 'm.toml: tasks."a": give a Conveyor task name'),
        ("m.toml", '[tasks]\na = { task = "b", queues = "q" }', "unknown key 'queues'"),
        ("m.toml", '[tasks]\na = { task = "b", queue = "a b" }', "queue name 'a b' is not allowed"),
        ("m.toml", '[tasks]\na = "b"\n[queues]\nx = 1', 'm.toml: queues."x": a queue name must be a string'),
        ("m.toml", '[tasks]\na = "b"\n[priorities]\nhigh = 1', "a source priority must be a whole number"),
        ("m.toml", '[tasks]\na = "b"\n[priorities]\n"1" = 9', "priority 9 is out of range"),
        ("m.toml", '[tasks]\na = "b"\n[lanes]\nx = "y"', "m.toml: unknown table 'lanes'"),
    ],
)
def test_a_file_that_cannot_be_used_is_refused_with_where_and_why(name: str, text: str, message: str) -> None:
    with pytest.raises(TaskMapError) as refused:
        parse_task_map(text, name=name)
    assert message in str(refused.value)
