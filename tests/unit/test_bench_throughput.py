"""bench.throughput's verdict per step: what counts as keeping up, and the ceiling."""

from __future__ import annotations

from bench.throughput import Answer, Step


def step(
    rate: float = 10,
    accepted: int = 100,
    answered_over: float = 9.9,
    latencies: int = 300,
    accepted_span: float = 9.9,
    sent_span: float = 10.4,
    drained: bool = True,
) -> Step:
    """A step of `rate` n/s for 10 s (100 offered), three deliveries each."""
    answers = [
        Answer(
            sent_at=i / rate,
            answered_at=i * answered_over / 99 + 0.05,
            status=202 if i < accepted else 429,
            notification_id=str(i),
        )
        for i in range(100)
    ]
    return Step(
        rate=rate,
        offered=100,
        answers=answers,
        latencies=[1.0] * latencies,
        accepted_span=accepted_span,
        sent_span=sent_span,
        deliveries_expected=3 * accepted,
        drained=drained,
    )


def test_a_step_whose_requests_and_deliveries_kept_pace_keeps_up() -> None:
    # Given 100 notifications offered at 10/s, all answered in stride, and their 300 deliveries sent
    # over about the same span (one batching window later)
    kept = step()

    # Then it keeps up: about 10 accepted/s, and deliveries sent about as fast as they were due
    assert 9.5 < kept.accepted_per_s <= 10.1
    assert kept.sustained_per_s >= 0.9 * kept.deliveries_offered_per_s
    assert kept.keeps_up


def test_a_step_whose_answers_lagged_does_not_keep_up() -> None:
    # Given the same 100 requests, the last answered 15 s after the first was sent
    slow = step(answered_over=15)

    # Then it accepted fewer per second than were offered
    assert slow.accepted_per_s < 0.9 * slow.offered_per_s
    assert not slow.accepts and not slow.keeps_up


def test_a_step_with_throttled_requests_does_not_keep_up() -> None:
    throttled = step(accepted=95)
    assert throttled.throttled == 5
    assert not throttled.accepts


def test_a_step_whose_deliveries_lagged_or_did_not_drain_does_not_keep_up() -> None:
    # Given deliveries sent over 15 s for 10 s of accepting, or not all sent in time
    lagging = step(sent_span=15)
    undrained = step(latencies=250, drained=False)

    # Then neither keeps up, though both accepted every request in stride
    assert lagging.accepts and not lagging.delivers
    assert undrained.accepts and not undrained.delivers
