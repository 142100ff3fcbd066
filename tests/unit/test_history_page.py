"""A notification to one recipient: its first fan-out page's record is the recipient's history item, and carries
their history entry, so the fan-out writes one item where it wrote two (docs/performance.md, "Cost")."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from herald.logic.fanout import fan_out
from herald.logic.sending import accept_notification
from herald.models.api import NotificationRequest
from herald.models.domain import Channel, Notification, PagePosition, Platform
from tests.fakes import (
    FakeDeviceRegistry,
    FakeHistory,
    FakeIntakeQueue,
    FakePublisher,
    FakeStatusStore,
    FakeSubscribers,
    make_device,
)

NOON = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
FIRST = PagePosition().key


def registry() -> FakeDeviceRegistry:
    return FakeDeviceRegistry(
        [
            make_device("ada", "iphone", Channel.PUSH, address="t1", platform=Platform.APNS, endpoint_arn="arn:1"),
            make_device("ada", "ipad", Channel.PUSH, address="t2", platform=Platform.APNS, endpoint_arn="arn:2"),
            make_device("ada", "web", Channel.IN_APP),
            make_device("bob", "web", Channel.IN_APP),
        ]
    )


def notification(recipients: list[str], page_in_history: bool) -> Notification:
    return Notification(
        notification_id="n-1",
        recipients=recipients,
        title="Your order has shipped",
        body="b",
        accepted_at=NOON,
        page_in_history=page_in_history,
    )


def fanned_out(message: Notification, times: int = 1) -> tuple[FakeStatusStore, FakeHistory]:
    status, history = FakeStatusStore(), FakeHistory()
    status.record_accepted(message)
    for _ in range(times):
        fan_out(message, registry(), FakeSubscribers(), FakePublisher(), status, FakeIntakeQueue(), history=history)
    return status, history


def test_a_one_recipient_notifications_page_record_carries_the_history_entry_and_writes_no_other():
    # Given a notification the API recorded for one recipient with three devices
    # When it fans out
    status, history = fanned_out(notification(["ada"], page_in_history=True))

    # Then the page's one write carries ada's entry, and fan-out writes no entry apart
    outcome = status.pages[("n-1", FIRST)].outcome
    assert outcome is not None and outcome.history_entry is not None
    entry = outcome.history_entry
    assert (entry.notification_id, entry.accepted_at, entry.deliveries) == ("n-1", NOON, 3)
    assert entry.channels == ["in_app", "push"]
    assert history.entries == []


def test_a_copy_of_the_page_message_never_writes_an_entry_over_the_record():
    # Given the page's message handled twice (an SQS duplicate, or a retry after a crash)
    status, history = fanned_out(notification(["ada"], page_in_history=True), times=2)

    # Then still no entry apart: a BatchWriteItem's put would replace the record it is
    assert history.entries == []
    assert status.journal.count(f"status.record_page {FIRST}") == 2


def test_a_notification_to_two_recipients_writes_their_entries_apart():
    status, history = fanned_out(notification(["ada", "bob"], page_in_history=False))
    outcome = status.pages[("n-1", FIRST)].outcome
    assert outcome is not None and outcome.history_entry is None
    assert sorted((user, entry.deliveries) for user, entry in history.entries) == [("ada", 3), ("bob", 1)]


def test_a_message_queued_without_the_api_keeps_its_page_record_and_entry_apart():
    # Given a one-recipient message an operator queued by hand (no accepted record: the flag is not set)
    status, history = fanned_out(notification(["ada"], page_in_history=False))

    # Then its page record stays in the status table, and its entry is written apart as before
    outcome = status.pages[("n-1", FIRST)].outcome
    assert outcome is not None and outcome.history_entry is None
    assert [user for user, _ in history.entries] == ["ada"]


def test_only_a_notification_to_one_recipient_may_keep_its_page_in_the_history():
    with pytest.raises(ValidationError, match="one recipient"):
        notification(["ada", "bob"], page_in_history=True)
    assert notification(["ada"], page_in_history=True).history_owner == "ada"
    # A later page of the chain (a recipient with more devices than a page holds) stays in the status table
    later = notification(["ada"], page_in_history=True).at(PagePosition(index=1))
    assert later.history_owner is None


@pytest.mark.parametrize(
    ("audience", "in_history"),
    [({"recipients": ["ada"]}, True), ({"recipients": ["ada", "bob"]}, False), ({"topic": "news"}, False)],
)
def test_the_api_keeps_the_page_in_the_history_for_one_recipient_only(audience, in_history):
    # Given a request to this audience, When the API accepts it
    intake = FakeIntakeQueue()
    request = NotificationRequest.model_validate({**audience, "title": "t", "body": "b"})
    accepted = accept_notification(request, FakeStatusStore(), intake)

    # Then the queued message says where its page record goes
    assert accepted.page_in_history is in_history
    assert [message.page_in_history for message in intake.sent] == [in_history]


def test_an_accept_redone_under_a_recorded_id_keeps_the_first_attempts_placement():
    # Given a first attempt recorded without the placement (by a version before it)
    status, intake = FakeStatusStore(), FakeIntakeQueue()
    status.record_accepted(notification(["ada"], page_in_history=False))

    # When an attempt that took its key over redoes the accept under the same id
    request = NotificationRequest.model_validate({"recipients": ["ada"], "title": "t", "body": "b"})
    again = accept_notification(request, status, intake, notification_id="n-1")

    # Then its message places the page where the record says a cancel will look for it
    assert again.page_in_history is False
    assert again.accepted_at == NOON
    assert [message.page_in_history for message in intake.sent] == [False]
