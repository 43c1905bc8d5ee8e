"""Unit tests for conveyor.backoff: exponential backoff with jitter and a cap."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.backoff import Backoff
from conveyor.errors import InvalidOptionError

PROPERTY = settings(database=None, derandomize=True, deadline=None, max_examples=100)
# Float rounding in nominal * (1 - j + 2 j r) may land an ulp outside the exact bound.
ULP = 1e-12

backoffs = st.builds(
    Backoff,
    base=st.floats(min_value=0, max_value=1e4),
    factor=st.floats(min_value=1, max_value=10),
    cap=st.floats(min_value=0, max_value=1e6),
    jitter=st.floats(min_value=0, max_value=0.99),
)
attempts = st.integers(min_value=1, max_value=10**6) | st.sampled_from([1, 2, 3, 1000, 1001, 1002, 10**18])
unit_interval = st.floats(min_value=0, max_value=1, exclude_max=True)


def nominal(backoff: Backoff, attempt: int) -> float:
    """The wait before jitter, read back from the bounds."""
    low, high = backoff.bounds(attempt)
    return (low + high) / 2


# -- the documented schedule -------------------------------------------------------------


def test_defaults_double_from_two_seconds_up_to_an_hour() -> None:
    backoff = Backoff(jitter=0.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [2.0, 4.0, 8.0, 16.0, 32.0, 64.0]
    assert backoff.delay(11) == 2048.0
    assert backoff.delay(12) == 3600.0  # 4096 is over the cap
    assert backoff.delay(500) == 3600.0


def test_default_parameters() -> None:
    assert Backoff() == Backoff(base=2.0, factor=2.0, cap=3600.0, jitter=0.1)


def test_bounds_are_nominal_plus_minus_jitter() -> None:
    backoff = Backoff(base=10.0, factor=3.0, cap=1000.0, jitter=0.25)
    assert backoff.bounds(1) == (7.5, 12.5)
    assert backoff.bounds(2) == (22.5, 37.5)
    assert backoff.bounds(3) == (67.5, 112.5)
    assert backoff.bounds(5) == (607.5, 1012.5)  # 10 * 3**4 = 810, under the cap
    assert backoff.bounds(6) == (750.0, 1250.0)  # 10 * 3**5 = 2430, capped at 1000


def test_delay_uses_the_random_source_across_the_whole_band() -> None:
    backoff = Backoff(base=100.0, factor=2.0, cap=1000.0, jitter=0.2)
    assert backoff.delay(1, rand=lambda: 0.0) == pytest.approx(80.0)
    assert backoff.delay(1, rand=lambda: 0.5) == pytest.approx(100.0)
    assert backoff.delay(1, rand=lambda: 0.75) == pytest.approx(110.0)
    assert backoff.delay(1, rand=lambda: 0.999999) == pytest.approx(120.0, rel=1e-5)


def test_delay_with_the_default_random_source_stays_in_bounds() -> None:
    backoff = Backoff()
    low, high = backoff.bounds(4)
    assert (low, high) == pytest.approx((14.4, 17.6))
    delays = {backoff.delay(4) for _ in range(200)}
    assert all(low <= d <= high for d in delays)
    assert len(delays) > 1  # jittered, not constant


# -- properties --------------------------------------------------------------------------


@PROPERTY
@given(backoff=backoffs, attempt=attempts, r=unit_interval)
def test_delay_is_within_bounds(backoff: Backoff, attempt: int, r: float) -> None:
    low, high = backoff.bounds(attempt)
    delay = backoff.delay(attempt, rand=lambda: r)
    assert 0 <= low <= high
    assert low * (1 - ULP) <= delay <= high * (1 + ULP)


@PROPERTY
@given(backoff=backoffs, attempt=attempts, r=unit_interval)
def test_delay_never_exceeds_cap_plus_jitter(backoff: Backoff, attempt: int, r: float) -> None:
    delay = backoff.delay(attempt, rand=lambda: r)
    assert math.isfinite(delay)
    assert delay <= backoff.cap * (1 + backoff.jitter) * (1 + ULP)
    assert nominal(backoff, attempt) <= backoff.cap * (1 + ULP)


@PROPERTY
@given(backoff=backoffs, attempt=attempts, step=st.integers(min_value=1, max_value=10**6))
def test_nominal_delay_never_decreases_with_attempts(backoff: Backoff, attempt: int, step: int) -> None:
    earlier_low, earlier_high = backoff.bounds(attempt)
    later_low, later_high = backoff.bounds(attempt + step)
    assert earlier_low <= later_low
    assert earlier_high <= later_high


@PROPERTY
@given(
    base=st.floats(min_value=1e-3, max_value=1e4),
    factor=st.floats(min_value=1, max_value=10),
    cap=st.floats(min_value=0, max_value=1e6),
    attempt=st.integers(min_value=1, max_value=1000),
)
def test_nominal_delay_follows_the_documented_formula(
    base: float, factor: float, cap: float, attempt: int
) -> None:
    """min(cap, base * factor ** (attempt - 1)), computed here in log space to avoid overflow."""
    log_raw = math.log(base) + (attempt - 1) * math.log(factor)
    expected = cap if cap == 0 or log_raw >= math.log(cap) else math.exp(log_raw)
    assert nominal(Backoff(base=base, factor=factor, cap=cap, jitter=0.0), attempt) == pytest.approx(
        expected, rel=1e-9
    )


@PROPERTY
@given(seconds=st.floats(min_value=0, max_value=1e6), attempt=attempts, r=unit_interval)
def test_fixed_waits_the_same_after_every_attempt(seconds: float, attempt: int, r: float) -> None:
    backoff = Backoff.fixed(seconds)
    assert backoff == Backoff(base=seconds, factor=1.0, cap=seconds, jitter=0.0)
    assert backoff.bounds(attempt) == (seconds, seconds)
    assert backoff.delay(attempt, rand=lambda: r) == seconds


@PROPERTY
@given(attempt=attempts, r=unit_interval)
def test_none_retries_at_once(attempt: int, r: float) -> None:
    backoff = Backoff.none()
    assert backoff.bounds(attempt) == (0.0, 0.0)
    assert backoff.delay(attempt, rand=lambda: r) == 0.0


# -- huge attempt numbers ------------------------------------------------------------------


@pytest.mark.parametrize("attempt", [1001, 10**6, 10**9, 10**18, 10**100])
@pytest.mark.parametrize(
    "backoff",
    [
        Backoff(),
        Backoff(base=1.0, factor=10.0, cap=60.0, jitter=0.5),  # float power overflows early
        Backoff(base=2, factor=10, cap=60, jitter=0.0),  # integer power: exact, huge
        Backoff(base=1e300, factor=1e300, cap=1e6, jitter=0.0),
    ],
    ids=["defaults", "float-factor", "int-factor", "enormous"],
)
def test_huge_attempt_numbers_give_the_cap(backoff: Backoff, attempt: int) -> None:
    low, high = backoff.bounds(attempt)
    assert (low, high) == (backoff.cap * (1 - backoff.jitter), backoff.cap * (1 + backoff.jitter))
    assert backoff.delay(attempt, rand=lambda: 0.5) == pytest.approx(backoff.cap)


def test_zero_base_never_waits_even_after_many_attempts() -> None:
    """base * factor ** n is 0 for every n; an overflowing power must not turn it into the cap."""
    backoff = Backoff(base=0.0, factor=3.0, cap=3600.0, jitter=0.0)
    assert backoff.delay(10) == 0.0
    assert backoff.delay(1000) == 0.0


def test_small_factor_still_reaches_the_cap_after_many_attempts() -> None:
    """1.01 ** 1999 is about 4e8, far over the cap; the exponent must not stop growing at 1000."""
    backoff = Backoff(base=1.0, factor=1.01, cap=1e6, jitter=0.0)
    assert backoff.delay(1001) == pytest.approx(1.01**1000)
    assert backoff.delay(2000) == 1e6


# -- bad parameters ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"base": -1.0}, "backoff base and cap must not be negative"),
        ({"cap": -0.5}, "backoff base and cap must not be negative"),
        ({"factor": 0.5}, "backoff factor must be at least 1"),
        ({"factor": 0.0}, "backoff factor must be at least 1"),
        ({"jitter": -0.1}, "backoff jitter must be in [0, 1)"),
        ({"jitter": 1.0}, "backoff jitter must be in [0, 1)"),
        ({"jitter": 1.5}, "backoff jitter must be in [0, 1)"),
        ({"jitter": float("nan")}, "backoff jitter must be in [0, 1)"),
    ],
)
def test_invalid_parameters_are_refused(params: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidOptionError) as info:
        Backoff(**params)
    assert str(info.value) == message


def test_fixed_refuses_a_negative_wait() -> None:
    with pytest.raises(InvalidOptionError, match=r"must not be negative"):
        Backoff.fixed(-1)


@pytest.mark.parametrize("param", ["base", "factor", "cap"])
def test_nan_parameters_are_refused(param: str) -> None:
    """NaN passes every ``<`` check; Backoff(cap=nan) would then hand back NaN delays."""
    with pytest.raises(InvalidOptionError):
        Backoff(**{param: float("nan")})


@pytest.mark.parametrize("attempt", [0, -1, -(10**20)])
def test_attempts_count_from_one(attempt: int) -> None:
    backoff = Backoff()
    with pytest.raises(InvalidOptionError) as info:
        backoff.delay(attempt)
    assert str(info.value) == f"attempt must be at least 1, got {attempt}"
    with pytest.raises(InvalidOptionError, match=r"attempt must be at least 1"):
        backoff.bounds(attempt)


def test_backoff_is_immutable() -> None:
    backoff = Backoff()
    with pytest.raises(AttributeError):
        backoff.base = 5.0  # type: ignore[misc]
