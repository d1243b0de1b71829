"""Window aggregation: equal to a brute-force oracle, and the same rows whether events are
streamed in any order and batching (closing windows as the watermark moves) or added all at
once from the offline log (backfill)."""

from __future__ import annotations

import random
from datetime import timedelta
from fractions import Fraction
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tureen import Aggregation, Entity, Field, FileSource, Float64, Int64, PushSource, String
from tureen.definitions import StreamFeatureView
from tureen.streaming.windows import (
    EXACT_DISTINCT_LIMIT,
    WindowRows,
    WindowState,
    exact_float,
    hll_estimate,
    hll_registers,
    stable_hash,
)

S = 10  # slide, µs (small numbers keep hypothesis fast; the code is unit-free)
account = Entity("account", join_keys=["account_id"], dtype=Int64)


def make_view(windows: tuple[int, int, int]) -> StreamFeatureView:
    w1, w2, w3 = (timedelta(microseconds=w * S) for w in windows)
    slide = timedelta(microseconds=S)
    return StreamFeatureView(
        name="v", entities=[account], source=PushSource("p", FileSource("data/p/")),
        schema=[Field("amount", Float64), Field("n", Int64), Field("merchant", String)],
        aggregations=[
            Aggregation("amount", "sum", w1, slide, name="sum_amount"),
            Aggregation("amount", "mean", w2, slide, name="mean_amount"),
            Aggregation("n", "max", w3, slide, name="max_n"),
            Aggregation("n", "sum", w1, slide, name="sum_n"),
            Aggregation("merchant", "count_distinct_approx", w2, slide, name="merchants"),
            Aggregation("amount", "count", w3, slide, name="count_amount"),
            Aggregation("amount", "min", w1, slide, name="min_amount"),
        ])


Event = tuple[int, int, float | None, int | None, str | None]  # entity, ts, amount, n, merchant

events_st = st.lists(
    st.tuples(
        st.integers(1, 3),
        st.integers(0, 400),
        st.one_of(st.none(), st.floats(-1e12, 1e12, allow_nan=False),
                  st.sampled_from([0.1, 0.2, 0.3, -0.0, 1e-300])),
        st.one_of(st.none(), st.integers(-(2**40), 2**40)),
        st.one_of(st.none(), st.sampled_from(["a", "b", "c", "d"])),
    ),
    max_size=60,
)


def oracle(view: StreamFeatureView, events: list[Event], entity: int, end: int) -> list[Any]:
    out: list[Any] = []
    for agg in view.aggregations:
        inside = [e for e in events if e[0] == entity and end - agg.window_us <= e[1] < end]
        col = {"amount": 2, "n": 3, "merchant": 4}[agg.column]
        vals = [e[col] for e in inside if e[col] is not None]
        if agg.function == "count":
            out.append(len(vals))
        elif agg.function == "count_distinct_approx":
            out.append(len(set(vals)))
        elif not vals:
            out.append(None)
        elif agg.function == "sum":
            total = sum(Fraction(v) for v in vals)
            out.append(float(total) if agg.column == "amount" else int(total))
        elif agg.function == "mean":
            out.append(float(sum(Fraction(v) for v in vals) / len(vals)))
        elif agg.function == "min":
            out.append(min(v + 0.0 for v in vals))
        else:
            out.append(max(vals))
    return out


def feed(state: WindowState, batch: list[Event]) -> None:
    state.add(*columns(batch))


def columns(batch: list[Event]) -> tuple[list[bytes], list[tuple[int]], list[int],
                                         dict[str, list[Any]]]:
    """What ``WindowState.add`` takes: keys, join values, event times, columns."""
    return ([e[0].to_bytes(8, "big") for e in batch], [(e[0],) for e in batch],
            [e[1] for e in batch], {"amount": [e[2] for e in batch], "n": [e[3] for e in batch],
                                    "merchant": [e[4] for e in batch]})


def rows(emitted: list[WindowRows]) -> dict[tuple[int, int], list[Any]]:
    out: dict[tuple[int, int], list[Any]] = {}
    for r in emitted:
        for i, (join, end) in enumerate(zip(r.entity_values, r.ends_us, strict=True)):
            assert (join[0], end) not in out, "a window was emitted twice"
            out[(join[0], end)] = [vals[i] for vals in r.values]
    return out


def stream(view: StreamFeatureView, events: list[Event], delay: int,
           rng: random.Random) -> tuple[dict[tuple[int, int], list[Any]], list[Event], int]:
    """Arrival order as given; an event behind the watermark is late and skipped (as the
    processor does); windows close as the watermark moves, in random batches."""
    state = WindowState(view, {"amount"})
    emitted: list[WindowRows] = []
    accepted: list[Event] = []
    newest = None
    i = 0
    while i < len(events):
        size = rng.randint(1, 7)
        batch = []
        for e in events[i:i + size]:
            watermark = None if newest is None else newest - delay
            if watermark is not None and e[1] < watermark:
                continue  # late
            batch.append(e)
            newest = e[1] if newest is None else max(newest, e[1])
        i += size
        feed(state, batch)
        accepted += batch
        if newest is not None:
            emitted.append(state.close_until(newest - delay))
    final = (newest - delay) if newest is not None else 0
    return rows(emitted), accepted, final


def backfill(view: StreamFeatureView, accepted: list[Event], final: int
             ) -> dict[tuple[int, int], list[Any]]:
    state = WindowState(view, {"amount"})
    feed(state, sorted(accepted, key=lambda e: e[1]))
    return rows([state.close_until(final)])


def same(a: list[Any], b: list[Any]) -> bool:
    return all(x == y and type(x) is type(y) for x, y in zip(a, b, strict=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_st, windows=st.tuples(st.integers(1, 4), st.integers(1, 4),
                                           st.integers(1, 4)),
       delay=st.integers(0, 60), seed=st.integers(0, 1000))
def test_stream_equals_backfill_equals_oracle(events: list[Event], windows: tuple[int, int, int],
                                              delay: int, seed: int) -> None:
    view = make_view(windows)
    streamed, accepted, final = stream(view, events, delay, random.Random(seed))
    assert streamed == backfill(view, accepted, final)
    agrees_with_oracle(view, accepted, streamed, final)


def agrees_with_oracle(view: StreamFeatureView, accepted: list[Event],
                       streamed: dict[tuple[int, int], list[Any]], final: int) -> None:
    """Every emitted row is the oracle's value; between rows the value did not change."""
    closed = (final // S) * S
    for entity in {e[0] for e in accepted}:
        last: list[Any] | None = None
        for end in range(0, closed + 1, S):
            want = oracle(view, accepted, entity, end)
            if (entity, end) in streamed:
                last = streamed[(entity, end)]
                assert same(last, want), (entity, end, last, want)
            elif last is not None:
                assert same(last, want), ("stale", entity, end, last, want)
            else:
                assert want == oracle(view, [], entity, end), ("missing", entity, end)


def test_float_sums_are_exact_and_order_free() -> None:
    vals = [0.1] * 10 + [1e16, -1e16]
    assert sum(exact_float(v) for v in vals) / (1 << 1074) == float(sum(map(Fraction, vals)))
    assert exact_float(-0.0) == 0


def test_distinct_hashes_are_stable_and_hll_is_close() -> None:
    assert stable_hash("abc") == stable_hash("abc") != stable_hash("abd")
    n = EXACT_DISTINCT_LIMIT * 5
    est = hll_estimate(hll_registers({stable_hash(i) for i in range(n)}))
    assert abs(est - n) / n < 0.03


def test_state_is_bounded_by_the_window() -> None:
    view = make_view((2, 3, 4))
    state = WindowState(view, {"amount"})
    for t in range(0, 100_000, 7):
        feed(state, [(t % 5, t, 1.0, 1, "m")])
        state.close_until(t)
    assert state.state_size() <= 5 * (4 * S // state.tile + 2)
    assert len(state.pending) <= 5 * 4 + 10


def make_late_view(windows: tuple[int, int, int], lateness: int) -> StreamFeatureView:
    base = make_view(windows)
    return StreamFeatureView(
        name=base.name, entities=base.entities, source=base.source, schema=base.schema,
        aggregations=base.aggregations, late_events="update",
        allowed_lateness=timedelta(microseconds=lateness))


def late_rows(emitted: list[WindowRows]) -> dict[tuple[int, int], tuple[int, list[Any]]]:
    """The newest row of each (entity, end) by created time, as the online store and a
    point-in-time join pick it; every rewrite is newer than the row it replaces."""
    out: dict[tuple[int, int], tuple[int, list[Any]]] = {}
    for r in emitted:
        for i, (join, end) in enumerate(zip(r.entity_values, r.ends_us, strict=True)):
            created = r.created_us[i]
            assert created >= end
            held = out.get((join[0], end))
            if held is not None:
                assert created > held[0], "a rewrite is not newer than the row it replaces"
            out[(join[0], end)] = (created, [vals[i] for vals in r.values])
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(events=events_st, windows=st.tuples(st.integers(1, 4), st.integers(1, 4),
                                           st.integers(1, 4)),
       delay=st.integers(0, 40), lateness=st.integers(1, 80), seed=st.integers(0, 1000))
def test_late_events_update_their_windows_as_a_backfill_would(
        events: list[Event], windows: tuple[int, int, int], delay: int, lateness: int,
        seed: int) -> None:
    """late_events="update": a late event within allowed_lateness rewrites the closed
    windows it changes. The newest row of every window equals a backfill that saw the same
    events (late flags included: same created time, same values), and every row a
    point-in-time read picks equals the brute-force oracle over the counted events."""
    view = make_late_view(windows, lateness)
    rng = random.Random(seed)
    state = WindowState(view, {"amount"})
    emitted: list[WindowRows] = []
    counted: list[tuple[Event, bool]] = []
    newest = None
    i = 0
    while i < len(events):
        size = rng.randint(1, 7)
        on_time, late = [], []
        for e in events[i:i + size]:
            watermark = None if newest is None else newest - delay
            if watermark is not None and e[1] < watermark:
                if watermark - e[1] <= lateness:
                    late.append(e)
                continue  # too late: dropped
            on_time.append(e)
            newest = e[1] if newest is None else max(newest, e[1])
        i += size
        feed(state, on_time)
        emitted.append(state.add_late(*columns(late)))
        counted += [(e, False) for e in on_time] + [(e, True) for e in late]
        if newest is not None:
            emitted.append(state.close_until(newest - delay))
    final = (newest - delay) if newest is not None else 0
    streamed = late_rows(emitted)

    again = WindowState(view, {"amount"})
    ordered = sorted(counted, key=lambda c: c[0][1])
    again.add(*columns([e for e, _ in ordered]), late=[flag for _, flag in ordered])
    assert streamed == late_rows([again.close_until(final)])

    agrees_with_oracle(view, [e for e, _ in counted],
                       {k: values for k, (_, values) in streamed.items()}, final)


def test_a_late_event_rewrites_its_closed_window_with_a_newer_row() -> None:
    view = make_late_view((2, 2, 2), lateness=30)
    state = WindowState(view, {"amount"})
    feed(state, [(1, 5, 1.0, 1, "a"), (1, 55, 2.0, 2, "b")])
    first = state.close_until(50)
    assert (first.ends_us, first.created_us) == ([10, 30], [10, 30])
    assert first.values[0] == [1.0, None]  # sum_amount over 20 µs windows
    rewrite = state.add_late(*columns([(1, 25, 4.0, 4, "c")]))  # 25 behind a watermark of 50
    assert rewrite.ends_us == [30, 50]  # where the late event's tile enters and leaves
    assert rewrite.created_us == [31, 51]
    assert [v[0] for v in zip(*rewrite.values, strict=True)] == [4.0, None]
    assert state.add_late(*columns([(1, 26, 1.0, 1, "d")])).created_us == [32, 52]


def test_tiles_stay_long_enough_for_a_late_event_to_find_its_window() -> None:
    view = make_late_view((4, 4, 4), lateness=60)  # 40 µs windows
    state = WindowState(view, {"amount"})
    feed(state, [(1, 120, 1.0, 1, "a"), (2, 240, 5.0, 5, "b")])
    state.close_until(200)  # the window [120, 160) is closed and long behind
    rewrite = state.add_late(*columns([(1, 150, 2.0, 2, "c")]))  # 50 behind 200
    sums = dict(zip(rewrite.ends_us, rewrite.values[0], strict=True))
    assert sums[160] == 3.0  # 120's event is still in its window
