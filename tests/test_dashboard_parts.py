"""The dashboard's parts on their own: span highlighting, chart geometry, session cookies and the SQL
aggregates behind the overview (on SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vallum.dashboard import charts, stats
from vallum.dashboard.highlight import Mark, segments
from vallum.dashboard.session import Sessions
from vallum.monitor.store import EventFilter, EventStore

SECRET = b"s" * 32

# ---- highlighting ---------------------------------------------------------------------------------------

span_lists = st.lists(
    st.fixed_dictionaries(
        {
            "start": st.integers(-5, 60),
            "end": st.integers(-5, 60),
            "category": st.sampled_from(["injection", "secrets", "pii"]),
            "rule_id": st.sampled_from(["R1", "R2", None]),
        }
    ),
    max_size=6,
)


@given(st.text(max_size=50), span_lists)
def test_highlighting_shows_every_character_once_marked_by_exactly_the_spans_over_it(
    body: str, spans: list[dict[str, Any]]
) -> None:
    runs = segments(body, spans)
    assert "".join(run.text for run in runs) == body
    position = 0
    for run in runs:
        assert run.text
        for i in range(position, position + len(run.text)):
            covering = {
                Mark(s["category"], s["rule_id"])
                for s in spans
                if 0 <= s["start"] < s["end"] <= len(body) and s["start"] <= i < s["end"]
            }
            assert set(run.marks) == covering
        position += len(run.text)


def test_spans_that_do_not_fit_the_text_are_ignored() -> None:
    broken: list[Any] = [
        {"start": 0, "end": 99, "category": "injection"},  # made for a longer text
        {"start": 1.0, "end": 3, "category": "injection"},
        {"start": True, "end": 3, "category": "injection"},
        {"start": 3, "end": 1, "category": "injection"},
        {"end": 2},
        "not a span",
    ]
    assert [(r.text, r.marks) for r in segments("hello", broken)] == [("hello", ())]
    assert [(r.text, r.marks) for r in segments("hello", None)] == [("hello", ())]


def test_overlapping_spans_split_the_text_where_they_start_and_end() -> None:
    spans = [
        {"start": 0, "end": 4, "category": "injection", "rule_id": "A"},
        {"start": 2, "end": 6, "category": "secrets", "rule_id": "B"},
    ]
    runs = segments("abcdefgh", spans)
    assert [(r.text, r.categories) for r in runs] == [
        ("ab", ["injection"]),
        ("cd", ["injection", "secrets"]),
        ("ef", ["secrets"]),
        ("gh", []),
    ]
    assert runs[1].title == "injection A; secrets B"


# ---- charts ---------------------------------------------------------------------------------------------


def test_stacked_columns_are_as_tall_as_their_counts_on_a_whole_number_axis() -> None:
    chart = charts.columns("t", ["a", "b"], {"allow": [3, 0], "block": [1, 2]})
    heights = {(r.label, r.series): r.height for r in chart.rects}
    assert heights[("a", "allow")] == pytest.approx(3 * heights[("a", "block")])
    assert heights[("a", "allow")] + heights[("a", "block")] == pytest.approx(2 * heights[("b", "block")])
    assert ("b", "allow") not in heights  # nothing drawn for a zero
    assert [label.text for label in chart.labels[:5]] == ["0", "1", "2", "3", "4"]


def test_a_line_leaves_out_buckets_without_traffic_and_stays_within_100_percent() -> None:
    chart = charts.line("t", ["a", "b", "c"], [0.5, None, 1.0])
    assert [p.label for p in chart.points] == ["a", "c"]
    assert chart.labels[4].text == "100%"


# ---- sessions -------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_session_cookie_reads_back_until_it_expires() -> None:
    clock = Clock()
    sessions = Sessions(SECRET, ttl_s=60, clock=clock)
    cookie, issued = sessions.issue("ops.team-1", "analyst")
    assert sessions.read(cookie) == issued and issued.token_id == "ops.team-1"
    clock.now += 61
    assert sessions.read(cookie) is None


def test_a_cookie_changed_or_signed_with_another_secret_is_refused() -> None:
    sessions = Sessions(SECRET, ttl_s=60)
    cookie, _ = sessions.issue("analyst-1", "analyst")
    assert sessions.read(cookie.replace(".analyst.", ".admin.")) is None
    assert Sessions(b"t" * 32, ttl_s=60).read(cookie) is None
    assert sessions.read(cookie + "x") is None
    assert sessions.read("v1.garbage") is None


def test_an_ended_session_is_refused_and_form_tokens_differ_per_session() -> None:
    sessions = Sessions(SECRET, ttl_s=60)
    first_cookie, first = sessions.issue("admin-1", "admin")
    _, second = sessions.issue("admin-1", "admin")
    assert sessions.csrf_valid(first, sessions.csrf_token(first))
    assert not sessions.csrf_valid(first, sessions.csrf_token(second))
    assert not sessions.csrf_valid(first, None)
    sessions.end(first)
    assert sessions.read(first_cookie) is None


def test_a_short_session_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Sessions(b"short", ttl_s=60)


# ---- aggregates on a real store -------------------------------------------------------------------------


@pytest.fixture
def store(url: str) -> Iterator[EventStore]:
    opened = EventStore(url)
    yield opened
    opened.close()


def event(
    n: int, at: float, action: str, guard_ms: float, upstream_ms: float, detectors: list[str]
) -> dict[str, Any]:
    findings = [{"detector": d, "category": "injection", "span": [0, 1]} for d in detectors]
    return {
        "id": f"e{n}",
        "time": at,
        "identity": {"user": "u"},
        "input": {"action": action, "categories": ["injection"] if detectors else [], "findings": findings},
        "output": {"action": "allow", "findings": []},
        "latency_ms": {"guard": guard_ms, "upstream": upstream_ms, "total": guard_ms + upstream_ms},
    }


def test_traffic_counts_events_per_bucket_and_action(store: EventStore) -> None:
    start = 1_700_000_000.0
    store.write_batch(
        [
            event(1, start + 10, "allow", 1, 1, []),
            event(2, start + 59.9, "block", 1, 0, ["sig"]),  # last moment of the first bucket
            event(3, start + 60, "block", 1, 0, ["sig"]),
            event(4, start + 179, "flag", 1, 1, []),
            event(5, start + 180, "allow", 1, 1, []),  # past the last bucket
            event(6, start - 1, "allow", 1, 1, []),  # before the first
        ]
    )
    found = stats.traffic(store.engine, EventFilter(), start, 60, 3)
    assert found.by_action == {
        "allow": [1, 0, 0],
        "flag": [0, 0, 1],
        "redact": [0, 0, 0],
        "block": [1, 1, 0],
    }
    assert found.block_rates() == [0.5, 1.0, 0.0]


def test_latency_percentiles_are_nearest_rank_over_requests_that_reached_each_stage(
    store: EventStore,
) -> None:
    store.write_batch([event(n, 1000.0 + n, "allow", float(n), float(10 * n), []) for n in range(1, 101)])
    store.write_batch([event(200, 2000.0, "block", 0.0, 0.0, ["sig"])])  # refused: not scanned or sent on
    found = stats.latency(store.engine, EventFilter())
    assert found["guard"].count == 100
    assert found["guard"].values == {0.5: 50.0, 0.95: 95.0, 0.99: 99.0}
    assert found["upstream"].values[0.99] == 990.0
    assert found["total"].count == 101


def test_top_detectors_count_each_detector_once_per_event(store: EventStore) -> None:
    store.write_batch(
        [
            event(1, 1000, "block", 1, 0, ["sig", "sig", "classifier"]),
            event(2, 1001, "block", 1, 0, ["sig"]),
            event(3, 1002, "allow", 1, 1, []),
        ]
    )
    found = stats.top_detectors(store.engine, EventFilter(), limit=5)
    assert found.counts == [("sig", 2), ("classifier", 1)] and not found.sampled
