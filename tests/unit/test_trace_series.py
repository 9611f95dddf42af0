"""The streaming leg statistics (LegAccumulator, instant_means), the gaps they report, and the
resolution limits of the downsampled series (coldchain.series). Times in minutes from T0."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coldchain.series import (
    DEFAULT_BUCKETS_PER_LEG,
    MAX_BUCKETS_PER_LEG,
    MAX_RESOLUTION_S,
    MIN_RESOLUTION_S,
    TraceRefused,
    choose_resolution,
    page_windows,
)
from coldchain.trace import (
    Leg,
    LegAccumulator,
    control_series,
    instant_means,
    leg_report,
)

T0 = 1_790_000_000_000
MIN = 60_000
HOUR = 60 * MIN
DAY = 24 * HOUR


def m(minutes: float) -> int:
    return T0 + round(minutes * MIN)


# -- gaps ------------------------------------------------------------------------------------


def test_gaps_are_the_stretches_no_reading_holds() -> None:
    # Leg [0, 60), cap 10 min. 2.0 @-5 holds [0, 5); 3.0 @20 holds [20, 30); 4.0 @35 holds
    # [35, 45). Holes: [5, 20), [30, 35), [45, 60) = 15 + 5 + 15 = 35 min unmonitored.
    series = [(m(-5), 2.0), (m(20), 3.0), (m(35), 4.0)]
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(60)), series, end_ms=m(60), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert r.gaps == ((m(5), m(20)), (m(30), m(35)), (m(45), m(60)))
    assert r.unmonitored_s == 35 * 60.0
    assert sum(b - a for a, b in r.gaps) / 1000.0 == r.unmonitored_s


def test_a_leg_without_data_is_one_gap_and_a_dock_leg_is_one_gap() -> None:
    empty = leg_report(
        Leg("truck-1", "c1", m(0), m(30)), [], end_ms=m(30), cap_ms=10 * MIN,
        low_c=None, high_c=None,
    )  # fmt: skip
    assert empty.gaps == ((m(0), m(30)),)
    dock = leg_report(
        Leg("truck-1", None, m(0), m(30)), [(m(1), 5.0)], end_ms=m(30), cap_ms=10 * MIN,
        low_c=None, high_c=None,
    )  # fmt: skip
    assert (dock.gaps, dock.readings) == (((m(0), m(30)),), 0)


def test_a_fully_monitored_leg_has_no_gaps() -> None:
    series = [(m(t), 3.0) for t in range(0, 60, 5)]
    r = leg_report(
        Leg("truck-1", "c1", m(0), m(60)), series, end_ms=m(60), cap_ms=10 * MIN,
        low_c=0.0, high_c=4.0,
    )  # fmt: skip
    assert (r.gaps, r.unmonitored_s, r.monitored_s) == ((), 0.0, 3600.0)


def test_the_list_of_gaps_is_bounded_but_the_time_counts_all() -> None:
    # A reading every 20 min against a 10 min cap for 100 h: 300 holes of 10 min each.
    series = [(m(t), 3.0) for t in range(0, 6000, 20)]
    acc = LegAccumulator(
        Leg("t", "c", m(0), m(6000)), end_ms=m(6000), cap_ms=10 * MIN, low_c=None, high_c=None,
        max_gaps=7,
    )  # fmt: skip
    acc.extend(series)
    r = acc.report()
    assert len(r.gaps) == 7 and r.gaps[0] == (m(10), m(20))
    assert r.unmonitored_s == 300 * 600.0


# -- streaming equals the whole series at once ------------------------------------------------


def test_instant_means_average_the_probes_of_one_instant() -> None:
    rows = [(m(0), 2.0), (m(0), 4.0), (m(1), 5.0), (m(2), 1.0), (m(2), 2.0), (m(2), 3.0)]
    assert list(instant_means(rows)) == [(m(0), 3.0), (m(1), 5.0), (m(2), 2.0)]
    assert list(instant_means([])) == []


readings = st.lists(
    st.tuples(
        st.integers(min_value=-30, max_value=120),  # minute
        st.integers(min_value=0, max_value=1),  # probe
        st.floats(min_value=-25.0, max_value=40.0, allow_nan=False),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@given(readings, st.integers(min_value=1, max_value=40))
def test_streamed_statistics_equal_the_batch_definition(
    rows: list[tuple[int, int, float]], cap_min: int
) -> None:
    # The batch definition: control_series over all values grouped by instant, then leg_report.
    by_ts: dict[int, list[float]] = {}
    for minute, _probe, v in rows:
        by_ts.setdefault(m(minute), []).append(v)
    batch_series = control_series({"product": by_ts})
    leg = Leg("t", "c", m(0), m(90))
    kw = {"end_ms": m(90), "cap_ms": cap_min * MIN, "low_c": 2.0, "high_c": 8.0}
    batch = leg_report(leg, batch_series, **kw)  # type: ignore[arg-type]
    # Streaming: rows in time order (probes of one instant adjacent), fed one at a time.
    ordered = sorted(((m(t), v) for t, _p, v in rows), key=lambda r: r[0])
    acc = LegAccumulator(leg, **kw)  # type: ignore[arg-type]
    for t, v in instant_means(iter(ordered)):
        acc.add(t, v)
    streamed = acc.report()
    assert streamed.readings == batch.readings
    assert streamed.gaps == batch.gaps
    for name in ("monitored_s", "unmonitored_s", "out_of_range_s", "min_c", "max_c"):
        assert getattr(streamed, name) == pytest.approx(getattr(batch, name)), name
    for name in ("mean_c", "mkt_c"):
        a, b = getattr(streamed, name), getattr(batch, name)
        assert (a is None) == (b is None) and (a is None or a == pytest.approx(b)), name


# -- resolution ------------------------------------------------------------------------------


def test_default_resolution_gives_the_longest_leg_at_most_the_default_buckets() -> None:
    # 7 days / 500 = 1209.6 s: the next step is 1800 s (336 buckets).
    assert choose_resolution([7 * DAY, HOUR], None) == 1800
    # A 2-hour shipment: 7200 / 500 = 14.4 s -> 15 s.
    assert choose_resolution([2 * HOUR], None) == 15
    assert choose_resolution([], None) == MIN_RESOLUTION_S
    for span in (HOUR, DAY, 30 * DAY, 200 * DAY):
        res = choose_resolution([span], None)
        assert span / 1000 / res <= DEFAULT_BUCKETS_PER_LEG


def test_a_chosen_resolution_is_kept_within_the_bucket_limit() -> None:
    assert choose_resolution([7 * DAY], 300) == 300  # 2016 buckets
    with pytest.raises(TraceRefused) as info:
        choose_resolution([7 * DAY, HOUR], 60)  # 10080 buckets
    # The message names the limit and the smallest resolution that would do.
    need = -(-7 * 86400 // (MAX_BUCKETS_PER_LEG - 1))
    assert f"more than {MAX_BUCKETS_PER_LEG}" in str(info.value)
    assert f"resolution_s >= {need}" in str(info.value)
    assert choose_resolution([7 * DAY], need) == need


def test_out_of_bounds_and_endless_legs_are_refused() -> None:
    with pytest.raises(ValueError, match=r"within 10\.\.86400"):
        choose_resolution([HOUR], MIN_RESOLUTION_S - 1)
    with pytest.raises(ValueError):
        choose_resolution([HOUR], MAX_RESOLUTION_S + 1)
    # A leg open since 1970: no resolution gives it fewer than the maximum buckets.
    with pytest.raises(TraceRefused, match="as of an earlier time"):
        choose_resolution([T0], None)


def test_page_windows_bound_the_values_per_request() -> None:
    # Buckets at 0, 10, 20, 30, 40 holding 4, 4, 4, 9, 1 values; pages of 8.
    t = [0, 10, 20, 30, 40]
    n = [4, 4, 4, 9, 1]
    assert page_windows(t, n, -5, 45, 8) == [(-5, 20), (20, 30), (30, 40), (40, 46)]
    # A bucket holding more than a page is a window of its own; one big page: one window.
    assert page_windows(t, n, -5, 45, 100) == [(-5, 46)]
    assert page_windows([], [], 0, 10, 8) == [(0, 11)]
