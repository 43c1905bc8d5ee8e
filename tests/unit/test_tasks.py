"""Unit tests for conveyor.tasks: the registry, argument checks, priorities, JSON encoding, imports."""

import asyncio
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor import JobContext
from conveyor.backoff import Backoff
from conveyor.errors import ArgumentsError, InvalidOptionError, TaskImportError
from conveyor.settings import MAX_ARGS_BYTES
from conveyor.tasks import (
    DEFAULT_MAX_ATTEMPTS,
    DEFAULT_QUEUE,
    PRIORITIES,
    Registry,
    Task,
    build_task,
    encode_args,
    parse_priority,
)

PROPERTY = settings(database=None, derandomize=True, deadline=None, max_examples=100)


@pytest.fixture
def registry() -> Registry:
    return Registry()


# -- the decorator and the registry ------------------------------------------------------


def test_bare_decorator_registers_with_defaults_and_returns_the_function(registry: Registry) -> None:
    def send_report(recipient: str) -> str:
        return f"sent to {recipient}"

    decorated = registry.task(send_report)

    assert decorated is send_report
    task = registry.get("send_report")
    assert task is not None
    assert task.name == "send_report"
    assert task.func is send_report
    assert task.queue == DEFAULT_QUEUE == "default"
    assert task.priority == PRIORITIES["normal"] == 2
    assert task.max_attempts == DEFAULT_MAX_ATTEMPTS == 5
    assert task.backoff == Backoff()
    assert task.timeout is None
    assert task.context_param is None
    assert task.is_async is False
    assert task("ana") == "sent to ana"


def test_decorator_with_options(registry: Registry) -> None:
    backoff = Backoff.fixed(30)

    @registry.task(
        name="emails.send", queue="emails", priority="high", max_attempts=3, backoff=backoff, timeout=12.5
    )
    async def send(to: str) -> None:
        return None

    task = registry.get("emails.send")
    assert task is not None
    assert registry.get("send") is None
    assert (task.name, task.queue, task.priority, task.max_attempts, task.timeout) == (
        "emails.send",
        "emails",
        1,
        3,
        12.5,
    )
    assert task.backoff is backoff
    assert task.is_async is True
    assert asyncio.iscoroutinefunction(send)


def test_priority_given_as_number(registry: Registry) -> None:
    @registry.task(priority=0)
    def urgent() -> None: ...

    assert registry.get("urgent").priority == 0  # type: ignore[union-attr]


def test_empty_name_falls_back_to_function_name(registry: Registry) -> None:
    @registry.task(name="")
    def cleanup() -> None: ...

    assert "cleanup" in registry
    assert "" not in registry


def test_two_functions_with_the_same_name_are_refused(registry: Registry) -> None:
    def first() -> None: ...

    def second() -> None: ...

    registry.task(name="dup")(first)
    with pytest.raises(InvalidOptionError) as info:
        registry.task(name="dup")(second)

    message = str(info.value)
    assert message.startswith("two tasks are named 'dup' (")
    assert f"{__name__}.test_two_functions_with_the_same_name_are_refused.<locals>.first" in message
    assert f"{__name__}.test_two_functions_with_the_same_name_are_refused.<locals>.second" in message
    assert "pass name=... to one of them" in message
    # The first registration is kept.
    assert registry.get("dup").func is first  # type: ignore[union-attr]
    assert len(registry) == 1


def test_same_function_registered_twice_is_fine(registry: Registry) -> None:
    def job() -> None: ...

    registry.task(job)
    registry.task(queue="other")(job)

    assert len(registry) == 1
    assert registry.get("job").queue == "other"  # type: ignore[union-attr]


def test_positional_only_parameter_is_refused(registry: Registry) -> None:
    def bad(a: int, /, b: int) -> None: ...

    with pytest.raises(InvalidOptionError) as info:
        registry.task(bad)
    assert str(info.value) == (
        "task 'bad': parameter 'a' cannot be passed by keyword; job arguments are keywords"
    )
    assert "bad" not in registry


def test_var_positional_parameter_is_refused(registry: Registry) -> None:
    def spread(*items: int) -> None: ...

    with pytest.raises(InvalidOptionError, match=r"task 'spread': parameter 'items' cannot be passed"):
        registry.task(spread)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_attempts": 0}, "task 'job': max_attempts must be at least 1"),
        ({"max_attempts": -3}, "task 'job': max_attempts must be at least 1"),
        ({"timeout": 0}, "task 'job': timeout must be positive"),
        ({"timeout": -1.0}, "task 'job': timeout must be positive"),
        ({"priority": "urgent"}, "unknown priority 'urgent'"),
        ({"priority": 7}, "priority 7 is out of range"),
    ],
)
def test_bad_task_options_are_refused(registry: Registry, options: dict[str, Any], message: str) -> None:
    def job() -> None: ...

    with pytest.raises(InvalidOptionError) as info:
        registry.task(**options)(job)
    assert str(info.value).startswith(message)
    assert len(registry) == 0


def test_non_callable_is_refused(registry: Registry) -> None:
    with pytest.raises(InvalidOptionError, match=r"a task must be a function, got 42"):
        registry.task(42)  # type: ignore[call-overload]


def test_resolve_by_name_task_or_function(registry: Registry) -> None:
    def a() -> None: ...

    def b() -> None: ...

    def stranger() -> None: ...

    registry.task(a)
    registry.task(name="bee", queue="bees")(b)
    task_b = registry.get("bee")
    assert task_b is not None

    assert registry.resolve("bee") is task_b
    assert registry.resolve(b) is task_b
    assert registry.resolve(task_b) is task_b
    assert registry.resolve("b") is None
    assert registry.resolve(stranger) is None
    assert registry.resolve(Task(name="nobody", func=stranger)) is None
    assert registry.queues() == {"default", "bees"}
    assert sorted(t.name for t in registry) == ["a", "bee"]
    assert "a" in registry
    assert "bee" in registry
    assert 42 not in registry


# -- the job context parameter ----------------------------------------------------------


def test_parameter_named_ctx_is_the_context(registry: Registry) -> None:
    @registry.task
    def with_ctx(ctx, n: int) -> None: ...  # type: ignore[no-untyped-def]

    task = registry.get("with_ctx")
    assert task is not None
    assert task.context_param == "ctx"
    task.check_args({"n": 1})  # ctx is not a job argument, so it is not required
    with pytest.raises(ArgumentsError) as info:
        task.check_args({"n": 1, "ctx": {}})
    assert str(info.value) == "task 'with_ctx': argument 'ctx' is reserved for the job context"


def test_parameter_annotated_job_context_is_the_context(registry: Registry) -> None:
    @registry.task
    def with_job(job: JobContext, n: int) -> None: ...

    task = registry.get("with_job")
    assert task is not None
    assert task.context_param == "job"
    task.check_args({"n": 1})
    with pytest.raises(ArgumentsError, match=r"argument 'job' is reserved for the job context"):
        task.check_args({"n": 1, "job": 1})


def test_context_name_is_reserved_even_for_tasks_taking_any_keyword(registry: Registry) -> None:
    @registry.task
    def loose(ctx: JobContext, **rest: object) -> None: ...

    task = registry.get("loose")
    assert task is not None
    task.check_args({"anything": 1})
    with pytest.raises(ArgumentsError, match=r"argument 'ctx' is reserved for the job context"):
        task.check_args({"ctx": 1})


def test_string_annotation_job_context_is_the_context(registry: Registry) -> None:
    @registry.task
    def with_job(job: "JobContext", n: int) -> None: ...

    assert registry.get("with_job").context_param == "job"  # type: ignore[union-attr]


# A class of the same name defined outside conveyor (an application's own model).
ForeignJobContext = type("JobContext", (), {"__module__": "myapp.models"})


def test_a_foreign_class_named_job_context_is_an_ordinary_argument(registry: Registry) -> None:
    @registry.task
    def lookalike(job: ForeignJobContext) -> None: ...  # type: ignore[valid-type]

    task = registry.get("lookalike")
    assert task is not None
    assert task.context_param is None
    with pytest.raises(ArgumentsError, match=r"task 'lookalike': missing required argument 'job'"):
        task.check_args({})


def test_job_context_imported_only_for_type_checking_is_still_the_context(
    registry: Registry, module_dir: Path
) -> None:
    """The usual ``if TYPE_CHECKING:`` import leaves the annotation unresolvable at run time."""
    (module_dir / "conveyor_unit_tc_tasks.py").write_text(
        textwrap.dedent(
            """\
            from __future__ import annotations

            from typing import TYPE_CHECKING

            if TYPE_CHECKING:
                from conveyor import JobContext


            def report(job: JobContext, n: int) -> None:
                pass
            """
        )
    )
    import conveyor_unit_tc_tasks  # type: ignore[import-not-found]

    registry.task(conveyor_unit_tc_tasks.report)
    task = registry.get("report")
    assert task is not None
    assert task.context_param == "job"
    task.check_args({"n": 1})


# -- Task.check_args --------------------------------------------------------------------


def test_unknown_argument_names_task_and_field(registry: Registry) -> None:
    @registry.task
    def greet(name: str, times: int = 1) -> None: ...

    with pytest.raises(ArgumentsError) as info:
        registry.get("greet").check_args({"nmae": "x"})  # type: ignore[union-attr]
    assert str(info.value) == "task 'greet': unexpected argument 'nmae' (it takes 'name', 'times')"


def test_unknown_arguments_for_a_task_without_parameters(registry: Registry) -> None:
    @registry.task
    def tick() -> None: ...

    with pytest.raises(ArgumentsError) as info:
        registry.get("tick").check_args({"a": 1, "b": 2})  # type: ignore[union-attr]
    assert str(info.value) == "task 'tick': unexpected argument 'a', 'b' (it takes no arguments)"


def test_missing_required_argument(registry: Registry) -> None:
    @registry.task
    def greet(name: str, greeting: str, times: int = 1) -> None: ...

    task = registry.get("greet")
    assert task is not None
    with pytest.raises(ArgumentsError) as info:
        task.check_args({"times": 2})
    assert str(info.value) == "task 'greet': missing required argument 'name', 'greeting'"
    task.check_args({"name": "a", "greeting": "hi"})  # the default fills times


def test_arguments_must_be_a_mapping(registry: Registry) -> None:
    @registry.task
    def tick() -> None: ...

    with pytest.raises(ArgumentsError) as info:
        registry.get("tick").check_args([1, 2])  # type: ignore[arg-type,union-attr]
    assert str(info.value) == "task 'tick': arguments must be a JSON object, got list"


def test_keyword_only_parameters_are_arguments(registry: Registry) -> None:
    @registry.task
    def kw(*, a: int, b: str = "x") -> None: ...

    task = registry.get("kw")
    assert task is not None
    task.check_args({"a": 1})
    with pytest.raises(ArgumentsError, match=r"missing required argument 'a'"):
        task.check_args({"b": "y"})


def _typed_task(registry: Registry, hint: Any) -> Task:
    """A task ``typed(value: hint)``."""

    def typed(value) -> None: ...  # type: ignore[no-untyped-def]

    typed.__annotations__ = {"value": hint, "return": None}
    return registry.add(build_task(typed))


_OPT_INT = typing.Optional[int]  # noqa: UP045
_UNION_INT_STR = typing.Union[int, str]  # noqa: UP007


def _case_id(hint: Any, value: Any) -> str:
    """A stable test id (no object addresses, so xdist workers agree)."""
    shown = repr(value) if isinstance(value, str | int | float | list | dict | tuple | None) else "object"
    return f"{str(hint).replace('typing.', '')}-{shown}"


ACCEPTED = [
    (str, "text"),
    (str, ""),
    (int, 3),
    (int, -7),
    (int, 10**30),
    (float, 1.5),
    (float, 2),  # an int is accepted where a float is declared
    (float, 0),
    (bool, True),
    (bool, False),
    (list, [1, "a"]),
    (list, []),
    (list[int], [1, 2]),
    (dict, {"a": 1}),
    (dict[str, int], {}),
    (typing.Sequence[str], ["a"]),
    (_OPT_INT, None),
    (_OPT_INT, 4),
    (int | None, None),
    (int | None, 4),
    (_UNION_INT_STR, 1),
    (_UNION_INT_STR, "1"),
    (Literal["a", "b"], "b"),
    (Literal[1, 2], 2),
    (type(None), None),
    (Any, object()),
    (object, {"x": [1]}),
]


@pytest.mark.parametrize(("hint", "value"), ACCEPTED, ids=[_case_id(h, v) for h, v in ACCEPTED])
def test_values_that_fit_their_annotation_are_accepted(registry: Registry, hint: Any, value: Any) -> None:
    _typed_task(registry, hint).check_args({"value": value})


REFUSED = [
    (str, 1, "str", "int 1"),
    (str, None, "str", "NoneType null"),
    (int, "3", "int", 'str "3"'),
    (int, 1.0, "int", "float 1.0"),
    (int, True, "int", "bool true"),  # bool is not an int
    (int, False, "int", "bool false"),
    (float, "1.5", "float", 'str "1.5"'),
    (float, True, "float", "bool true"),
    (bool, 1, "bool", "int 1"),
    (bool, "true", "bool", 'str "true"'),
    (list, {"a": 1}, "list", "dict {'a': 1}"),
    (list, "abc", "list", 'str "abc"'),
    (list[int], (1, 2), "list[int]", "tuple (1, 2)"),
    (dict, [1], "dict", "list [1]"),
    (dict[str, int], "x", "dict[str, int]", 'str "x"'),
    (_OPT_INT, "4", "Optional[int]", 'str "4"'),
    (int | None, 4.5, "int | None", "float 4.5"),
    (_UNION_INT_STR, 1.5, "Union[int, str]", "float 1.5"),
    (_UNION_INT_STR, None, "Union[int, str]", "NoneType null"),
    (Literal["a", "b"], "c", "Literal['a', 'b']", 'str "c"'),
    (type(None), 0, "NoneType", "int 0"),
]


@pytest.mark.parametrize(
    ("hint", "value", "expected", "got"), REFUSED, ids=[_case_id(r[0], r[1]) for r in REFUSED]
)
def test_values_that_do_not_fit_are_refused_naming_task_and_field(
    registry: Registry, hint: Any, value: Any, expected: str, got: str
) -> None:
    task = _typed_task(registry, hint)
    with pytest.raises(ArgumentsError) as info:
        task.check_args({"value": value})
    assert str(info.value) == f"task 'typed': argument 'value' should be {expected}, got {got}"


def test_literal_of_ints_refuses_booleans(registry: Registry) -> None:
    """True == 1 in Python, but a JSON true is not the number 1 (bool is not an int elsewhere)."""
    task = _typed_task(registry, Literal[1, 2])
    with pytest.raises(ArgumentsError, match=r"argument 'value'"):
        task.check_args({"value": True})
    with pytest.raises(ArgumentsError, match=r"argument 'value'"):
        task.check_args({"value": 1.0})


def test_literal_type_error_lists_the_allowed_values(registry: Registry) -> None:
    """'should be Literal' alone does not tell the caller what to send."""
    with pytest.raises(ArgumentsError) as info:
        _typed_task(registry, Literal["red", "green"]).check_args({"value": "blue"})
    expected = str(info.value).split(" should be ", 1)[1].split(", got", 1)[0]
    assert "'red'" in expected
    assert "'green'" in expected


def test_optional_type_error_names_the_inner_type(registry: Registry) -> None:
    """'should be Optional' alone does not say Optional what."""
    with pytest.raises(ArgumentsError) as info:
        _typed_task(registry, _OPT_INT).check_args({"value": "x"})
    expected = str(info.value).split(" should be ", 1)[1].split(", got", 1)[0]
    assert "int" in expected


def test_long_values_are_shortened_in_the_message(registry: Registry) -> None:
    task = _typed_task(registry, int)
    with pytest.raises(ArgumentsError) as info:
        task.check_args({"value": "x" * 100})
    message = str(info.value)
    assert message == "task 'typed': argument 'value' should be int, got str \"" + "x" * 36 + "..."


def test_unannotated_parameters_accept_anything(registry: Registry) -> None:
    @registry.task
    def loose(a, b=None) -> None: ...  # type: ignore[no-untyped-def]

    task = registry.get("loose")
    assert task is not None
    for value in (1, "s", None, [1], {"k": "v"}, True, 1.5, object()):
        task.check_args({"a": value, "b": value})


def test_the_first_bad_argument_is_reported(registry: Registry) -> None:
    @registry.task
    def pair(a: int, b: str) -> None: ...

    with pytest.raises(ArgumentsError) as info:
        registry.get("pair").check_args({"b": 2, "a": "one"})  # type: ignore[union-attr]
    assert str(info.value) == "task 'pair': argument 'b' should be str, got int 2"


def test_var_keyword_task_accepts_unknown_arguments(registry: Registry) -> None:
    @registry.task
    def flexible(a: int, **extra: Any) -> None: ...

    task = registry.get("flexible")
    assert task is not None
    task.check_args({"a": 1, "anything": object(), "more": [1]})
    with pytest.raises(ArgumentsError, match=r"missing required argument 'a'"):
        task.check_args({"anything": 1})
    with pytest.raises(ArgumentsError, match=r"argument 'a' should be int, got str"):
        task.check_args({"a": "1", "other": 2})


def test_unresolvable_annotations_fall_back_to_name_checks(registry: Registry) -> None:
    def odd(a: "NoSuchType", b: int) -> None: ...  # type: ignore[name-defined]  # noqa: F821

    task = registry.add(build_task(odd))
    task.check_args({"a": 1, "b": "not an int"})  # types cannot be checked
    with pytest.raises(ArgumentsError, match=r"missing required argument 'b'"):
        task.check_args({"a": 1})


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=10,
)


@PROPERTY
@given(value=_JSON, hint=st.sampled_from([h for h, _ in ACCEPTED] + [h for h, *_ in REFUSED]))
def test_check_args_raises_only_arguments_error(hint: Any, value: Any) -> None:
    task = _typed_task(Registry(), hint)
    try:
        task.check_args({"value": value})
    except ArgumentsError as exc:
        message = str(exc)
    else:
        return
    assert message.startswith("task 'typed': argument 'value' should be ")


# -- parse_priority ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("critical", 0),
        ("high", 1),
        ("normal", 2),
        ("low", 3),
        ("HIGH", 1),
        ("Low", 3),
        ("0", 0),
        ("3", 3),
        ("02", 2),
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
    ],
)
def test_parse_priority_accepts(value: int | str, expected: int) -> None:
    assert parse_priority(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("urgent", "unknown priority 'urgent': use critical, high, normal, low or 0-3"),
        ("", "unknown priority '': use critical, high, normal, low or 0-3"),
        (" 1", "unknown priority ' 1': use critical, high, normal, low or 0-3"),
        ("-1", "unknown priority '-1': use critical, high, normal, low or 0-3"),
        ("1.0", "unknown priority '1.0': use critical, high, normal, low or 0-3"),
        ("4", "priority 4 is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        ("10", "priority 10 is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        (4, "priority 4 is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        (-1, "priority -1 is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        (True, "priority True is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        (False, "priority False is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        (1.0, "priority 1.0 is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
        (None, "priority None is out of range: use 0 (critical), 1 (high), 2 (normal) or 3 (low)"),
    ],
)
def test_parse_priority_refuses(value: Any, message: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        parse_priority(value)
    assert str(info.value) == message


@pytest.mark.parametrize("value", ["²", "¹", "①"])
def test_parse_priority_refuses_unicode_digit_symbols_cleanly(value: str) -> None:
    """str.isdigit() is true for these but int() cannot read them."""
    with pytest.raises(InvalidOptionError):
        parse_priority(value)


@PROPERTY
@given(st.text(max_size=6) | st.integers())
def test_parse_priority_returns_0_to_3_or_refuses(value: int | str) -> None:
    try:
        result = parse_priority(value)
    except InvalidOptionError:
        return
    assert result in (0, 1, 2, 3)


# -- encode_args ------------------------------------------------------------------------


def test_encode_args_is_compact_json() -> None:
    text = encode_args("t", {"a": 1, "b": [True, None], "c": {"d": "é"}})
    assert text == '{"a":1,"b":[true,null],"c":{"d":"é"}}'


@pytest.mark.parametrize(
    ("args", "detail"),
    [
        ({"when": {1, 2}}, "Object of type set is not JSON serializable"),
        ({"data": b"bytes"}, "Object of type bytes is not JSON serializable"),
        ({"x": object()}, "Object of type object is not JSON serializable"),
        ({"x": float("nan")}, "Out of range float values are not JSON compliant"),
        ({"x": float("inf")}, "Out of range float values are not JSON compliant"),
        ({"x": [float("-inf")]}, "Out of range float values are not JSON compliant"),
    ],
)
def test_encode_args_refuses_non_json(args: dict[str, Any], detail: str) -> None:
    with pytest.raises(ArgumentsError) as info:
        encode_args("export", args)
    message = str(info.value)
    assert message.startswith("task 'export': arguments are not JSON: ")
    assert detail in message


def test_encode_args_size_limit_is_inclusive() -> None:
    overhead = len('{"s":""}')
    at_limit = {"s": "x" * (MAX_ARGS_BYTES - overhead)}
    assert len(encode_args("big", at_limit)) == MAX_ARGS_BYTES == 1024 * 1024

    over = {"s": "x" * (MAX_ARGS_BYTES - overhead + 1)}
    with pytest.raises(ArgumentsError) as info:
        encode_args("big", over)
    assert str(info.value) == (
        f"task 'big': arguments take {MAX_ARGS_BYTES + 1} bytes as JSON, more than the "
        f"{MAX_ARGS_BYTES} byte limit; store large data elsewhere and pass a reference"
    )


def test_encode_args_limit_counts_bytes_of_non_ascii_text() -> None:
    # Non-ASCII is sent as UTF-8 (three bytes for "€"); the limit is on bytes, not characters.
    limit_in_euros = (MAX_ARGS_BYTES - len('{"s":""}')) // 3
    encode_args("t", {"s": "€" * limit_in_euros})
    with pytest.raises(ArgumentsError, match="bytes as JSON"):
        encode_args("t", {"s": "€" * (limit_in_euros + 1)})


# -- Registry.import_modules ------------------------------------------------------------


@pytest.fixture
def unit_modules() -> Iterator[None]:
    """Forget the conveyor_unit_* modules a test imported (they live in its tmp_path)."""
    yield
    for name in [n for n in sys.modules if n.startswith("conveyor_unit_")]:
        del sys.modules[name]


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit_modules: None) -> Path:
    folder = tmp_path / "task_modules"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    return folder


def test_import_modules_imports_and_skips_blank_names(registry: Registry, module_dir: Path) -> None:
    (module_dir / "conveyor_unit_ok_tasks.py").write_text("LOADED = 42\n")

    registry.import_modules(["", "   ", " conveyor_unit_ok_tasks \n"])

    assert sys.modules["conveyor_unit_ok_tasks"].LOADED == 42


def test_import_module_that_raises_names_module_exception_file_and_line(
    registry: Registry, module_dir: Path
) -> None:
    path = module_dir / "conveyor_unit_broken_tasks.py"
    path.write_text("import os\n\nSETTING = os.environ\nraise RuntimeError('no SMTP host configured')\n")

    with pytest.raises(TaskImportError) as info:
        registry.import_modules(["conveyor_unit_broken_tasks"])

    assert str(info.value) == (
        "cannot import task module 'conveyor_unit_broken_tasks': "
        f"RuntimeError: no SMTP host configured ({path}, line 4)"
    )
    assert isinstance(info.value.__cause__, RuntimeError)
    assert "conveyor_unit_broken_tasks" not in sys.modules


def test_import_error_points_at_the_innermost_module(registry: Registry, module_dir: Path) -> None:
    (module_dir / "conveyor_unit_outer.py").write_text("import conveyor_unit_inner\n")
    inner = module_dir / "conveyor_unit_inner.py"
    inner.write_text("def boom():\n    return 1 / 0\n\nboom()\n")

    with pytest.raises(TaskImportError) as info:
        registry.import_modules(["conveyor_unit_outer"])

    assert str(info.value) == (
        "cannot import task module 'conveyor_unit_outer': "
        f"ZeroDivisionError: division by zero ({inner}, line 2)"
    )


def test_import_module_with_syntax_error(registry: Registry, module_dir: Path) -> None:
    path = module_dir / "conveyor_unit_syntax.py"
    path.write_text("x = 1\ndef f(:\n    pass\n")

    with pytest.raises(TaskImportError) as info:
        registry.import_modules(["conveyor_unit_syntax"])

    message = str(info.value)
    assert message.startswith("cannot import task module 'conveyor_unit_syntax': SyntaxError: ")
    assert message.endswith(f"({path}, line 2)")


def test_import_missing_module(registry: Registry, module_dir: Path) -> None:
    with pytest.raises(TaskImportError) as info:
        registry.import_modules(["conveyor_unit_no_such_module"])
    assert str(info.value) == (
        "cannot import task module 'conveyor_unit_no_such_module': "
        "ModuleNotFoundError: No module named 'conveyor_unit_no_such_module'"
    )
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_import_stops_at_the_first_failing_module(registry: Registry, module_dir: Path) -> None:
    (module_dir / "conveyor_unit_first.py").write_text("A = 1\n")
    (module_dir / "conveyor_unit_third.py").write_text("C = 3\n")

    with pytest.raises(TaskImportError, match=r"'conveyor_unit_second_missing'"):
        registry.import_modules(
            ["conveyor_unit_first", "conveyor_unit_second_missing", "conveyor_unit_third"]
        )

    assert "conveyor_unit_first" in sys.modules
    assert "conveyor_unit_third" not in sys.modules


def test_import_error_location_survives_a_path_containing_importlib(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unit_modules: None
) -> None:
    """A user's folder may well be called e.g. ``importlib_compat``; its frames are not importlib's."""
    folder = tmp_path / "importlib_compat"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    path = folder / "conveyor_unit_shadowed.py"
    path.write_text("raise KeyError('region')\n")

    with pytest.raises(TaskImportError) as info:
        registry.import_modules(["conveyor_unit_shadowed"])
    assert str(info.value).endswith(f"KeyError: 'region' ({path}, line 1)")
