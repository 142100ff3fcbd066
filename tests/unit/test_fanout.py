"""Fan-out: one delivery per matching device, recorded before it is published."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest

from herald.adapters.batches import BatchEntryFailed
from herald.logic.fanout import fan_out, plan_deliveries
from herald.models.domain import Channel, DeliveryJob, DeliveryState, Notification, Platform, now
from tests.fakes import FakeDeviceRegistry, FakePublisher, FakeStatusStore, make_device

PUSH_ARN = "arn:aws:sns:us-east-1:123456789012:endpoint/APNS/herald/1"
OWNER = "request-1/message-1"


def deadline(seconds: int = 60) -> datetime:
    return now() + timedelta(seconds=seconds)


@pytest.fixture
def registry() -> FakeDeviceRegistry:
    """user-42 reads email and the in-app inbox, user-43 has a phone; nobody else has devices."""
    return FakeDeviceRegistry(
        [
            make_device("user-42", "laptop-mail", Channel.EMAIL, address="ada@example.com"),
            make_device("user-42", "web-inbox", Channel.IN_APP),
            make_device(
                "user-43", "iphone", Channel.PUSH, address="f0e1d2", platform=Platform.APNS, endpoint_arn=PUSH_ARN
            ),
            make_device("user-99", "old-phone", Channel.SMS, address="+14155550100"),
        ]
    )


def for_users(notification: Notification, *recipients: str, channels: list[Channel] | None = None) -> Notification:
    return notification.model_copy(update={"recipients": list(recipients), "channels": channels})


def test_one_job_per_device_of_every_recipient(notification, registry):
    # Given two recipients with three devices between them
    topic, status = FakePublisher(), FakeStatusStore()

    # When the notification is fanned out
    result = fan_out(notification, registry, topic, status, OWNER, deadline())

    # Then each device gets one job carrying the notification and the device's address
    published = {(job.user_id, job.device_id): job for job in topic.published}
    assert sorted(published) == [("user-42", "laptop-mail"), ("user-42", "web-inbox"), ("user-43", "iphone")]
    assert published["user-42", "laptop-mail"].address == "ada@example.com"
    assert published["user-43", "iphone"].endpoint_arn == PUSH_ARN
    assert {job.notification_id for job in topic.published} == {notification.notification_id}
    assert {job.priority for job in topic.published} == {notification.priority}
    assert result.jobs == topic.published
    assert result.without_devices == []


def test_only_devices_of_the_requested_channels_get_a_job(notification, registry):
    # Given a notification for the in-app inbox only
    in_app_only = for_users(notification, "user-42", "user-43", channels=[Channel.IN_APP])
    topic, status = FakePublisher(), FakeStatusStore()

    # When it is fanned out
    result = fan_out(in_app_only, registry, topic, status, OWNER, deadline())

    # Then only the inbox device gets a job, and user-43 (a phone only) counts as without devices
    assert [(job.user_id, job.device_id) for job in topic.published] == [("user-42", "web-inbox")]
    assert result.without_devices == ["user-43"]


def test_recipients_without_devices_are_recorded(notification, registry):
    # Given one recipient with devices and two without
    mixed = for_users(notification, "user-7", "user-42", "user-8")
    topic, status = FakePublisher(), FakeStatusStore()

    # When it is fanned out
    fan_out(mixed, registry, topic, status, OWNER, deadline())

    # Then the notification is marked fanned out with its delivery count and who had no device
    fanned_out = status.fanned_out[notification.notification_id]
    assert fanned_out.delivery_count == 2
    assert fanned_out.without_devices == ["user-7", "user-8"]


def test_fan_out_is_claimed_published_then_recorded_with_its_planned_deliveries(notification, registry):
    # Given an accepted notification, and a status store and topic that write to one journal
    journal: list[str] = []
    topic, status = FakePublisher(journal=journal), FakeStatusStore(journal=journal)
    status.record_accepted(notification)

    # When the notification is fanned out
    fan_out(notification, registry, topic, status, OWNER, deadline())

    # Then one write after publishing records it done, and each published delivery reads queued until claimed
    assert journal == ["status.record_accepted", "status.claim_fan_out", "topic.publish", "status.record_fanned_out"]
    record = status.get(notification.notification_id)
    assert record is not None
    assert sorted((d.user_id, d.device_id, d.status.value) for d in record.deliveries) == sorted(
        (job.user_id, job.device_id, "queued") for job in topic.published
    )


def test_a_failed_publish_propagates_and_leaves_the_notification_not_fanned_out(notification, registry):
    # Given a topic that refuses this notification's jobs
    topic, status = FakePublisher(failing=[notification.notification_id]), FakeStatusStore()

    # When the notification is fanned out
    with pytest.raises(BatchEntryFailed) as raised:
        fan_out(notification, registry, topic, status, OWNER, deadline())

    # Then the failure reaches the caller, so the intake message is retried, and nothing marks it done
    assert len(raised.value.failed) == 3
    assert notification.notification_id not in status.fanned_out


def test_no_devices_at_all_publishes_nothing_and_still_marks_fanned_out(notification, registry):
    # Given recipients none of whom has a device
    nobody = for_users(notification, "user-7", "user-8")
    journal: list[str] = []
    topic, status = FakePublisher(journal=journal), FakeStatusStore(journal=journal)

    # When it is fanned out
    result = fan_out(nobody, registry, topic, status, OWNER, deadline())

    # Then nothing is queued or published, and the status can say "no devices"
    assert journal == ["status.claim_fan_out", "status.record_fanned_out"]
    assert result.jobs == []
    assert status.fanned_out[notification.notification_id].without_devices == ["user-7", "user-8"]


def test_a_duplicate_intake_message_of_a_fanned_out_notification_publishes_nothing(notification, registry):
    # Given a notification already fanned out once
    topic, status = FakePublisher(), FakeStatusStore()
    fan_out(notification, registry, topic, status, OWNER, deadline())

    # When SQS delivers its intake message again
    again = fan_out(notification, registry, topic, status, "request-2/message-1", deadline())

    # Then it is recognised as done and no job is published twice
    assert again.already_done
    assert len(topic.published) == 3


def test_a_fan_out_in_progress_elsewhere_asks_to_come_back_when_its_claim_expires(notification, registry):
    # Given another invocation holding the notification's fan-out for 30 more seconds
    topic, status = FakePublisher(), FakeStatusStore()
    status.claim_fan_out(notification.notification_id, "request-1/message-1", deadline(30))

    # When a duplicate intake message arrives
    result = fan_out(notification, registry, topic, status, "request-2/message-1", deadline())

    # Then nothing is published and the message should return after the claim expires
    assert topic.published == []
    assert 30 <= result.busy_for <= 31


def test_a_fan_out_taking_over_a_crashed_one_keeps_progress_and_publishes_again(notification, registry):
    # Given a fan-out that crashed after publishing, whose deliveries made progress since
    topic, status = FakePublisher(), FakeStatusStore()
    status.claim_fan_out(notification.notification_id, "crashed/message-1", deadline(-1))
    crashed = _planned(notification, registry)  # the crashed one published these
    first = crashed[0]
    status.claim_delivery(first, "deliver/1", deadline())
    status.record_outcome(first, "deliver/1", DeliveryState.SENT, provider_message_id="provider-1")

    # When the intake message returns and another invocation takes over
    result = fan_out(notification, registry, topic, status, "request-2/message-1", deadline())

    # Then every job is published again (each delivery's claim stops a second send), the sent one stays sent
    assert len(result.jobs) == 3
    assert status.delivery(notification.notification_id, first.delivery_id).status is DeliveryState.SENT
    assert notification.notification_id in status.fanned_out


def test_inactive_push_devices_are_skipped_and_named(notification, registry):
    # Given user-43's only device, a push endpoint SNS reported disabled
    registry.mark_inactive("user-43", "iphone", "EndpointDisabled: Endpoint is disabled", endpoint_arn=PUSH_ARN)
    topic, status = FakePublisher(), FakeStatusStore()

    # When the notification is fanned out
    result = fan_out(notification, registry, topic, status, OWNER, deadline())

    # Then the device gets no job, the status names it, and user-43 counts as without an active device
    assert ("user-43", "iphone") not in {(job.user_id, job.device_id) for job in topic.published}
    assert result.inactive_skipped == ["user-43/iphone"]
    assert status.fanned_out[notification.notification_id].inactive_skipped == ["user-43/iphone"]
    assert result.without_devices == ["user-43"]


def _planned(notification: Notification, registry: FakeDeviceRegistry) -> list[DeliveryJob]:
    return plan_deliveries(notification, registry).jobs
