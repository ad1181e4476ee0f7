"""The admission decision alone: time is passed in, so bursts, refills and recovery are exact."""

from __future__ import annotations

import math

from callroom.admission import (
    RETRY_AFTER_BACKLOG,
    RETRY_AFTER_CALLS,
    RETRY_AFTER_TICK,
    Admission,
    Limits,
    Load,
    Reason,
    ReportedAdmission,
    TokenBucket,
)

IDLE = Load(0)


def test_no_limits_admit_everything() -> None:
    adm = Admission(Limits())
    for i in range(10_000):
        assert adm.decide(i * 1e-6, Load(i, i, 1e6)) is None
    assert adm.admitted == 10_000 and not adm.refused
    assert math.isinf(adm.budget(1.0))
    assert Limits().describe() == "no limits"


def test_calls_up_refuse_the_call_past_the_limit_and_admit_once_one_ends() -> None:
    adm = Admission(Limits(max_calls=2))
    assert adm.decide(0.0, Load(0)) is None
    assert adm.decide(0.0, Load(1)) is None
    refused = adm.decide(0.0, Load(2))
    assert refused is not None and refused.reason is Reason.CALLS
    assert refused.retry_after == RETRY_AFTER_CALLS
    assert "2 calls up" in refused.detail and "max calls 2" in refused.detail
    assert adm.decide(0.0, Load(1)) is None  # one ended
    assert adm.admitted == 3 and adm.refused == {Reason.CALLS: 1}


def test_a_burst_past_the_rate_is_refused_and_calls_are_admitted_again_as_the_budget_refills() -> None:
    adm = Admission(Limits(max_calls_per_second=10))
    admitted = [adm.decide(0.0, IDLE) is None for _ in range(25)]
    assert admitted == [True] * 10 + [False] * 15  # a second's worth at once, no more
    refused = adm.decide(0.0, IDLE)
    assert refused is not None and refused.reason is Reason.RATE and refused.retry_after == 1
    assert adm.decide(0.05, IDLE) is not None  # half a token
    assert adm.decide(0.1, IDLE) is None  # one token back after 1/10 s
    assert adm.decide(0.1, IDLE) is not None
    # Then offered at 3x the rate for 10 s (the budget empty): admitted at the rate, one call in three.
    t0, got = 0.1, []
    for i in range(1, 301):
        got.append(adm.decide(t0 + i / 30, IDLE) is None)
    assert 99 <= sum(got) <= 100
    assert all(sum(got[i:i + 30]) in (9, 10, 11) for i in range(0, 300, 30))
    # The load falls: a quiet second refills the whole burst.
    assert [adm.decide(12.0, IDLE) is None for _ in range(11)] == [True] * 10 + [False]


def test_retry_after_says_when_the_budget_has_room() -> None:
    adm = Admission(Limits(max_calls_per_second=0.25))  # one call every 4 s
    assert adm.decide(0.0, IDLE) is None
    refused = adm.decide(0.0, IDLE)
    assert refused is not None and refused.retry_after == 4
    refused = adm.decide(3.5, IDLE)
    assert refused is not None and refused.retry_after == 1  # never 0
    assert adm.decide(4.0, IDLE) is None


def test_a_late_media_tick_refuses_until_it_catches_up() -> None:
    adm = Admission(Limits(max_tick_lateness_ms=20))
    assert adm.decide(0.0, Load(5, tick_late_ms=20.0)) is None  # at the limit is fine
    refused = adm.decide(0.0, Load(5, tick_late_ms=35.0))
    assert refused is not None and refused.reason is Reason.TICK_LATENESS
    assert refused.retry_after == RETRY_AFTER_TICK and "35 ms late" in refused.detail
    assert adm.decide(0.1, Load(5, tick_late_ms=3.0)) is None


def test_a_setup_backlog_refuses_until_the_control_plane_catches_up() -> None:
    adm = Admission(Limits(max_setup_backlog=3))
    assert adm.decide(0.0, Load(10, setup_backlog=2)) is None
    refused = adm.decide(0.0, Load(10, setup_backlog=3))
    assert refused is not None and refused.reason is Reason.SETUP_BACKLOG
    assert refused.retry_after == RETRY_AFTER_BACKLOG
    assert adm.decide(0.0, Load(10, setup_backlog=0)) is None


def test_a_call_refused_for_another_limit_takes_nothing_from_the_budget() -> None:
    adm = Admission(Limits(max_calls=1, max_calls_per_second=1))
    for _ in range(5):
        refused = adm.decide(0.0, Load(1))
        assert refused is not None and refused.reason is Reason.CALLS
    assert adm.decide(0.0, Load(0)) is None  # the one token is still there
    assert adm.refused == {Reason.CALLS: 5}


def test_check_counts_and_takes_nothing() -> None:
    adm = Admission(Limits(max_calls_per_second=1))
    assert adm.check(0.0, IDLE) is None and adm.check(0.0, IDLE) is None
    assert adm.admitted == 0 and adm.budget(0.0) == 1.0


def test_calls_admitted_elsewhere_take_from_the_budget_as_a_debt() -> None:
    adm = Admission(Limits(max_calls_per_second=2))
    for _ in range(4):
        adm.charge(0.0)  # four dials: two past the budget
    assert adm.budget(0.0) == -2.0
    assert adm.decide(1.0, IDLE) is not None  # the debt is paid first (at 2/s: 1.5 s to one token)
    assert adm.decide(1.5, IDLE) is None


def test_the_bucket_never_goes_back_in_time_and_never_overfills() -> None:
    bucket = TokenBucket(rate=10, capacity=10)
    bucket.take(5.0)
    assert bucket.available(4.0) == 9.0  # an earlier "now" refills nothing
    assert bucket.available(100.0) == 10.0
    bucket.sync(50.0, 100.0)
    assert bucket.available(100.0) == 10.0


def test_the_api_side_decides_with_the_reported_figures_and_counts_its_own_calls_since() -> None:
    view = ReportedAdmission(Limits(max_calls=3, max_calls_per_second=100))
    view.report(Load(1), budget=100.0, at=0.0)
    assert view.decide(0.0) is None  # 2 up
    assert view.decide(0.0) is None  # 3 up
    refused = view.decide(0.0)
    assert refused is not None and refused.reason is Reason.CALLS
    view.report(Load(1), budget=100.0, at=0.1)  # two calls ended meanwhile
    assert view.decide(0.1) is None


def test_the_api_side_takes_the_reported_budget() -> None:
    view = ReportedAdmission(Limits(max_calls_per_second=10))
    view.report(Load(0), budget=1.0, at=5.0)  # the INVITEs took the rest
    assert view.decide(5.0) is None
    refused = view.decide(5.0)
    assert refused is not None and refused.reason is Reason.RATE
    assert view.decide(5.1) is None  # refilled at the same rate
    view.report(Load(0), budget=math.inf, at=6.0)  # a report without a budget changes nothing
    assert view.admission.budget(6.0) == 9.0


def test_limits_describe_themselves() -> None:
    text = Limits.defaults().describe()
    assert "calls" in text and "new calls/s" in text and "ms late" in text and "set-up" in text
