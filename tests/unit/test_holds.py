"""Holding on SQS: hops of at most 15 minutes, released to intake or the topic when due."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.logic.holds import MAX_DELAY_SECONDS, delay_until, hold_notification, release_or_hold
from herald.models.domain import Notification
from tests.fakes import FakeHolds, FakeIntakeQueue, FakePublisher

AT = datetime(2026, 6, 1, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("left", "delay"),
    [
        (timedelta(hours=8), MAX_DELAY_SECONDS),
        (timedelta(seconds=900), 900),
        (timedelta(seconds=4.2), 5),  # rounded up: never early
        (timedelta(0), 0),
        (timedelta(seconds=-3), 0),
    ],
)
def test_each_hop_waits_the_time_left_up_to_sqs_maximum(left, delay):
    assert delay_until(AT + left, AT) == delay


def test_a_scheduled_notification_hops_until_its_time_then_goes_to_intake():
    # Given a notification to send 40 minutes from now
    notification = Notification(notification_id="n", recipients=["ada"], title="t", body="b", accepted_at=AT)
    holds, intake, topic = FakeHolds(), FakeIntakeQueue(), FakePublisher()
    hold_notification(notification, AT + timedelta(minutes=40), holds, at=AT)

    # When each hop is received when its delay is over
    at = AT
    while True:
        message, delay = holds.held[-1]
        at += timedelta(seconds=delay)
        if release_or_hold(message, holds, intake, topic, at=at):
            break

    # Then it hopped 900 + 900 + 600 seconds, each a new message, and went to intake on time
    assert [delay for _, delay in holds.held] == [900, 900, 600]
    assert at == AT + timedelta(minutes=40)
    assert [n.notification_id for n in intake.sent] == ["n"]
    assert topic.published == []
