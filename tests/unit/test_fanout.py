"""Fan-out: one delivery per matching device, a page at a time, each page read, published, recorded, continued."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from herald.adapters.batches import BatchEntryFailed
from herald.adapters.topics import shard_of
from herald.logic.fanout import PageLimits, fan_out, plan_page
from herald.models.domain import (
    ROOT_PAGE,
    SUBSCRIBER_SHARDS,
    Channel,
    DeliveryState,
    Device,
    Notification,
    PagePosition,
    Platform,
    now,
)
from tests.fakes import (
    FakeDeviceRegistry,
    FakeIntakeQueue,
    FakePublisher,
    FakeStatusStore,
    FakeSubscribers,
    make_device,
)

PUSH_ARN = "arn:aws:sns:us-east-1:123456789012:endpoint/APNS/herald/1"


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


class Run:
    """One fan-out setting: the fakes it writes to, one journal for all of them."""

    def __init__(self, registry: FakeDeviceRegistry, subscribers: FakeSubscribers | None = None, failing=()):
        self.journal: list[str] = []
        self.registry = registry
        self.subscribers = subscribers or FakeSubscribers()
        self.topic = FakePublisher(failing=failing, journal=self.journal)
        self.status = FakeStatusStore(journal=self.journal)
        self.intake = FakeIntakeQueue(journal=self.journal)

    def __call__(self, notification: Notification, limits: PageLimits | None = None):
        return fan_out(
            notification,
            self.registry,
            self.subscribers,
            self.topic,
            self.status,
            self.intake,
            limits or PageLimits(),
        )

    def drain(self, first: Notification, limits: PageLimits) -> int:
        """Fans `first` out, then every continuation it queues, as the intake queue would; returns pages run."""
        pending, pages = [first], 0
        while pending:
            sent_before = len(self.intake.sent)
            self(pending.pop(0), limits=limits)
            pages += 1
            pending += self.intake.sent[sent_before:]
        return pages


def for_users(notification: Notification, *recipients: str, channels: list[Channel] | None = None) -> Notification:
    return notification.model_copy(update={"recipients": list(recipients), "channels": channels})


def crowd(count: int, devices: int = 1) -> FakeDeviceRegistry:
    return FakeDeviceRegistry(
        make_device(f"user-{u:04d}", f"device-{d:02d}", Channel.IN_APP) for u in range(count) for d in range(devices)
    )


def test_one_job_per_device_of_every_recipient(notification, registry):
    # Given two recipients with three devices between them
    run = Run(registry)

    # When the notification is fanned out
    result = run(notification)

    # Then each device gets one job carrying the notification and the device's address
    published = {(job.user_id, job.device_id): job for job in run.topic.published}
    assert sorted(published) == [("user-42", "laptop-mail"), ("user-42", "web-inbox"), ("user-43", "iphone")]
    assert published["user-42", "laptop-mail"].address == "ada@example.com"
    assert published["user-43", "iphone"].endpoint_arn == PUSH_ARN
    assert {job.notification_id for job in run.topic.published} == {notification.notification_id}
    assert {job.priority for job in run.topic.published} == {notification.priority}
    assert result.jobs == run.topic.published
    assert result.without_devices == []
    # And a notification of one page is not paged: its jobs carry no page, nothing is continued
    assert {job.page for job in run.topic.published} == {None}
    assert all(job.queued_at is not None for job in run.topic.published)
    assert run.intake.sent == []


def test_only_devices_of_the_requested_channels_get_a_job(notification, registry):
    # Given a notification for the in-app inbox only
    run = Run(registry)

    # When it is fanned out
    result = run(for_users(notification, "user-42", "user-43", channels=[Channel.IN_APP]))

    # Then only the inbox device gets a job, and user-43 (a phone only) counts as without devices
    assert [(job.user_id, job.device_id) for job in run.topic.published] == [("user-42", "web-inbox")]
    assert result.without_devices == ["user-43"]


def test_recipients_without_devices_are_recorded(notification, registry):
    # Given one recipient with devices and two without
    run = Run(registry)

    # When it is fanned out
    run(for_users(notification, "user-7", "user-42", "user-8"))

    # Then the notification is marked fanned out with its delivery count and who had no device
    fanned_out = run.status.fanned_out[notification.notification_id]
    assert fanned_out.delivery_count == 2
    assert fanned_out.without_devices == ["user-7", "user-8"]


def test_a_page_is_read_published_then_recorded_with_its_planned_deliveries(notification, registry):
    # Given an accepted notification
    run = Run(registry)
    run.status.record_accepted(notification)

    # When the notification is fanned out
    run(notification)

    # Then one write after publishing records the page done, and each published delivery reads queued until claimed
    page = PagePosition().key
    assert run.journal == [
        "status.record_accepted",
        f"status.page_state {page}",
        "topic.publish",
        f"status.record_page {page}",
    ]
    record = run.status.get(notification.notification_id)
    assert record is not None and record.status.value == "in_progress"
    assert sorted((d.user_id, d.device_id, d.status.value) for d in record.deliveries) == sorted(
        (job.user_id, job.device_id, "queued") for job in run.topic.published
    )


def test_a_failed_publish_propagates_and_leaves_the_page_not_done(notification, registry):
    # Given a topic that refuses this notification's jobs
    run = Run(registry, failing=[notification.notification_id])

    # When the notification is fanned out
    with pytest.raises(BatchEntryFailed) as raised:
        run(notification)

    # Then the failure reaches the caller, so the intake message is retried, and nothing marks it done
    assert len(raised.value.failed) == 3
    assert notification.notification_id not in run.status.fanned_out


def test_no_devices_at_all_publishes_nothing_and_still_marks_fanned_out(notification, registry):
    # Given recipients none of whom has a device
    run = Run(registry)

    # When it is fanned out
    result = run(for_users(notification, "user-7", "user-8"))

    # Then nothing is queued or published, and the status can say "no devices"
    assert run.journal == ["status.page_state 00.000000", "status.record_page 00.000000"]
    assert result.jobs == []
    assert run.status.fanned_out[notification.notification_id].without_devices == ["user-7", "user-8"]
    assert run.status.get(notification.notification_id).status.value == "no_devices"


def test_a_duplicate_intake_message_of_a_fanned_out_notification_publishes_nothing(notification, registry):
    # Given a notification already fanned out once
    run = Run(registry)
    run(notification)

    # When SQS delivers its intake message again
    again = run(notification)

    # Then it is recognised as done and no job is published twice
    assert again.already_done
    assert len(run.topic.published) == 3


def test_two_copies_fanning_one_page_out_at_once_both_publish_and_the_first_record_stands(notification, registry):
    # Given a copy of the intake message that read the page as not done and published, but has not recorded it
    run = Run(registry)
    concurrent, outcome = plan_page(notification, registry, run.subscribers, PageLimits())
    run.topic.publish(concurrent)

    # When the other copy fans the page out and records it, and then the first copy records its own
    result = run(notification)
    late = run.status.record_page(notification, notification.page_key, outcome)

    # Then both published (each delivery's claim sends it once), the second copy recorded the page, and the
    # late record is refused without changing it
    assert len(result.jobs) == 3 and not result.claim_lost
    assert len(run.topic.published) == 6
    assert late is False
    assert run.status.fanned_out[notification.notification_id].delivery_count == 3


def test_a_fan_out_taking_over_a_crashed_one_keeps_progress_and_publishes_again(notification, registry):
    # Given a fan-out that crashed after publishing, whose deliveries made progress since
    run = Run(registry)
    crashed, _ = plan_page(notification, registry, run.subscribers, PageLimits())
    first = crashed[0]
    run.status.claim_delivery(first, "deliver/1", deadline())
    run.status.record_outcome(first, "deliver/1", DeliveryState.SENT, provider_message_id="provider-1")

    # When the intake message returns and another invocation takes over
    result = run(notification)

    # Then every job is published again (each delivery's claim stops a second send), the sent one stays sent
    assert len(result.jobs) == 3
    assert run.status.delivery(notification.notification_id, first.delivery_id).status is DeliveryState.SENT
    assert notification.notification_id in run.status.fanned_out


def test_inactive_push_devices_are_skipped_and_named(notification, registry):
    # Given user-43's only device, a push endpoint SNS reported disabled
    registry.mark_inactive("user-43", "iphone", "EndpointDisabled: Endpoint is disabled", endpoint_arn=PUSH_ARN)
    run = Run(registry)

    # When the notification is fanned out
    result = run(notification)

    # Then the device gets no job, the status names it, and user-43 counts as without an active device
    assert ("user-43", "iphone") not in {(job.user_id, job.device_id) for job in run.topic.published}
    assert result.inactive_skipped == ["user-43/iphone"]
    assert run.status.fanned_out[notification.notification_id].inactive_skipped == ["user-43/iphone"]
    assert result.without_devices == ["user-43"]


# --- pages -----------------------------------------------------------------------------------------------


def test_an_audience_larger_than_a_page_is_fanned_out_page_by_page_each_device_once(notification):
    # Given 25 recipients with 2 devices each, and pages of at most 10 deliveries
    registry = crowd(25, devices=2)
    run = Run(registry)
    wide = for_users(notification, *(f"user-{u:04d}" for u in range(25)))
    limits = PageLimits(deliveries=10, users=100, lookups=4)

    # When the first page runs, then each continuation it queues
    pages = run.drain(wide, limits)

    # Then 5 pages published the 50 deliveries, each exactly once, at most 10 per page
    published = Counter((job.user_id, job.device_id) for job in run.topic.published)
    assert len(published) == 50 and set(published.values()) == {1}
    assert pages == 5
    per_page = Counter(job.page for job in run.topic.published)
    assert per_page == {f"00.{index:06d}": 10 for index in range(5)}
    # And the notification reads fanned out, with every delivery planned
    fanned_out = run.status.fanned_out[notification.notification_id]
    assert fanned_out.delivery_count == 50
    record = run.status.get(notification.notification_id)
    assert record is not None and record.counts == {"queued": 50} and record.fanout_pages == 5


def test_a_user_with_more_devices_than_a_page_is_split_between_pages(notification):
    # Given one recipient with 23 devices, then one with 1, and pages of 10 deliveries
    registry = crowd(1, devices=23)
    registry.put(make_device("user-9999", "phone", Channel.IN_APP))
    run = Run(registry)
    limits = PageLimits(deliveries=10, users=100, lookups=4)

    # When it is fanned out to the end
    pages = run.drain(for_users(notification, "user-0000", "user-9999"), limits)

    # Then the big user's devices are spread over three pages, resumed after the last device each time
    published = [(job.page, job.user_id, job.device_id) for job in run.topic.published]
    assert pages == 3
    assert len(published) == len(set(published)) == 24
    assert Counter(page for page, _, _ in published) == {"00.000000": 10, "00.000001": 10, "00.000002": 4}
    assert run.intake.sent[0].page.cursor.model_dump() == {"user": "user-0000", "after_device": "device-09"}
    # And neither user counts as without devices
    assert run.status.fanned_out[notification.notification_id].without_devices == []


def test_a_retried_page_that_finished_publishes_nothing_and_queues_its_successor_only_if_that_was_lost(notification):
    # Given a page that finished, but whose invocation stopped before queueing the next page
    registry = crowd(15)
    run = Run(registry)
    wide = for_users(notification, *(f"user-{u:04d}" for u in range(15)))
    limits = PageLimits(deliveries=10, users=100, lookups=4)
    jobs, outcome = plan_page(wide, registry, run.subscribers, limits)
    run.topic.publish(jobs)
    run.status.record_page(wide, wide.page_key, outcome)
    published = len(run.topic.published)

    # When its message comes back
    again = run(wide, limits=limits)

    # Then nothing is published again, and the next page is queued (and marked queued)
    assert again.already_done
    assert len(run.topic.published) == published
    [continuation] = run.intake.sent
    assert continuation.page is not None and continuation.page.index == 1

    # When the same message comes back once more
    run(wide, limits=limits)

    # Then nothing happens: the successor is not queued twice, so a duplicate cannot run down the chain
    assert len(run.intake.sent) == 1 and len(run.topic.published) == published


def test_a_page_that_crashed_mid_publish_resumes_from_its_own_cursor_without_touching_finished_pages(notification):
    # Given a 3-page fan-out whose first page finished and whose second crashed after publishing part of it
    registry = crowd(30)
    run = Run(registry)
    wide = for_users(notification, *(f"user-{u:04d}" for u in range(30)))
    limits = PageLimits(deliveries=10, users=100, lookups=4)
    run(wide, limits=limits)
    [second] = run.intake.sent
    jobs, _ = plan_page(second, registry, run.subscribers, limits)
    run.topic.publish(jobs[:4])  # then the process died

    # When the second page's message comes back, and its successor runs
    run.intake.sent = []
    run(second, limits=limits)
    [third] = run.intake.sent
    run(third, limits=limits)

    # Then the first page's deliveries were published once, the second's partly twice (their claims stop a
    # second send), the third's once; and the notification reads fanned out with its 30 planned deliveries
    published = Counter((job.page, job.user_id) for job in run.topic.published)
    by_page: dict[str, set[int]] = {}
    for (page, _), times in published.items():
        by_page.setdefault(page, set()).add(times)
    assert by_page == {"00.000000": {1}, "00.000001": {1, 2}, "00.000002": {1}}
    assert run.status.fanned_out[wide.notification_id].delivery_count == 30


def test_device_lookups_run_concurrently_and_no_more_at_once_than_the_limit(notification):
    # Given 40 recipients whose device queries each take a little while
    registry = SlowRegistry(crowd(40))
    run = Run(registry)  # type: ignore[arg-type]

    # When a page looks up their devices with at most 8 queries at once
    run(for_users(notification, *(f"user-{u:04d}" for u in range(40))), limits=PageLimits(lookups=8))

    # Then queries overlapped, never more than 8 at once, and each recipient was looked up once
    assert 1 < registry.most_at_once <= 8
    assert sorted(registry.inner.lookups) == [f"user-{u:04d}" for u in range(40)]
    assert len(run.topic.published) == 40


def test_a_page_looks_up_about_as_many_users_as_it_can_take(notification):
    # Given 100 recipients with 4 devices each, and pages of 20 deliveries looked up 4 at a time
    registry = crowd(100, devices=4)
    run = Run(registry)

    # When the first page runs
    run(for_users(notification, *(f"user-{u:04d}" for u in range(100))), limits=PageLimits(deliveries=20, lookups=4))

    # Then it took 5 users' devices and looked up no more than it took plus one batch of queries (not all 100):
    # after the first 4 users it knows a user has about 4 devices and asks for one more
    assert len(run.topic.published) == 20
    assert registry.lookups[:5] == [f"user-{u:04d}" for u in range(5)]
    assert len(registry.lookups) <= 5 + 4


# --- topics ----------------------------------------------------------------------------------------------


def test_a_topic_notification_starts_one_chain_per_subscriber_shard(notification):
    # Given a topic notification as the API queues it
    run = Run(FakeDeviceRegistry(), FakeSubscribers({"news": ["user-0001"]}))
    broadcast = notification.model_copy(update={"recipients": None, "topic": "news"})

    # When its first (root) page runs
    result = run(broadcast)

    # Then it publishes nothing and queues the first page of each shard's chain
    assert broadcast.page_key == ROOT_PAGE
    assert result.jobs == [] and run.topic.published == []
    assert [n.page.model_dump() for n in run.intake.sent if n.page] == [
        {"chain": shard, "index": 0, "cursor": None} for shard in range(SUBSCRIBER_SHARDS)
    ]


def test_a_broadcast_reaches_every_subscribers_devices_once(notification):
    # Given 60 subscribers of "news" with 2 in-app devices each, a non-subscriber, and pages of 8 deliveries
    subscribers = [f"user-{u:04d}" for u in range(60)]
    registry = crowd(61, devices=2)
    run = Run(registry, FakeSubscribers({"news": subscribers}))
    broadcast = notification.model_copy(update={"recipients": None, "topic": "news"})
    limits = PageLimits(deliveries=8, users=100, lookups=4)

    # When the root page and every page it leads to run
    run.drain(broadcast, limits)

    # Then each subscriber's devices got one job, tagged with its page; the non-subscriber none
    published = Counter((job.user_id, job.device_id) for job in run.topic.published)
    assert set(published.values()) == {1} and len(published) == 120
    assert {user for user, _ in published} == set(subscribers)
    assert all(
        job.page is not None and job.page.startswith(f"{shard_of(job.user_id):02d}.") for job in run.topic.published
    )
    # And the status reads every chain fanned out, with 120 deliveries planned
    record = run.status.get(notification.notification_id)
    assert record is not None and record.topic == "news"
    assert record.delivery_count == 120 and record.counts == {"queued": 120}
    assert record.status.value == "in_progress" and record.fanned_out_at is not None


class SlowRegistry:
    """A registry whose device queries take 20 ms each, counting how many run at once."""

    def __init__(self, inner: FakeDeviceRegistry):
        self.inner = inner
        self.running = 0
        self.most_at_once = 0
        self._lock = threading.Lock()

    def devices_after(self, user_id: str, after: str | None, limit: int) -> tuple[list[Device], bool]:
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        time.sleep(0.02)
        try:
            return self.inner.devices_after(user_id, after, limit)
        finally:
            with self._lock:
                self.running -= 1
