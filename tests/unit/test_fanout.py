"""Fan-out: one delivery per matching device, a page at a time, each page recorded, published, continued; and the
cancel that races a page's record."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import datetime, timedelta

import pytest

from herald.adapters.batches import BatchEntryFailed
from herald.adapters.topics import shard_of
from herald.logic.delivery import RetryPolicy, deliver
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
from herald.models.status import Cancellation
from tests.fakes import (
    FakeDeviceRegistry,
    FakeInboxSender,
    FakeIntakeQueue,
    FakePublisher,
    FakeSender,
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
        self.inbox = FakeInboxSender()  # its items are the records of in-app deliveries sent on a first try
        self.status = FakeStatusStore(journal=self.journal, inbox=self.inbox)
        self.intake = FakeIntakeQueue(journal=self.journal)

    def __call__(self, notification: Notification, limits: PageLimits | None = None):
        return fan_out(
            notification, self.registry, self.subscribers, self.topic, self.status, self.intake, limits or PageLimits()
        )

    def deliver_published(self) -> Counter[str]:
        """Hands every job published so far to the delivery logic, as the priority queues would (each claims its
        delivery first, but an in-app one's first try, whose inbox item a copy finds); returns how many times each
        delivery was sent: taken by its provider, or written to its inbox."""
        sender, inbox = FakeSender(), self.inbox
        sent_before = len(inbox.sent)
        senders = {channel: inbox if channel is Channel.IN_APP else sender for channel in Channel}
        policy = RetryPolicy(max_attempts=5, base=1, cap=1)
        for job in self.topic.published:
            deliver(job, 1, deadline(), senders, self.status, self.registry, policy)  # type: ignore[arg-type]
        return Counter(job.delivery_id for job in sender.sent + inbox.sent[sent_before:])

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


def test_a_page_is_recorded_with_its_planned_deliveries_in_one_write_then_published(notification, registry):
    # Given an accepted notification
    run = Run(registry)
    run.status.record_accepted(notification)

    # When the notification is fanned out
    run(notification)

    # Then one write before publishing records the page fanned out, and each delivery reads queued until claimed
    page = PagePosition().key
    assert run.journal == ["status.record_accepted", f"status.record_page {page}", "topic.publish"]
    record = run.status.get(notification.notification_id)
    assert record is not None and record.status.value == "in_progress"
    assert sorted((d.user_id, d.device_id, d.status.value) for d in record.deliveries) == sorted(
        (job.user_id, job.device_id, "queued") for job in run.topic.published
    )


def test_a_failed_publish_propagates_and_its_retry_publishes_every_delivery_which_is_sent_once(notification, registry):
    # Given a topic that refuses this notification's jobs, once
    run = Run(registry, failing=[notification.notification_id])

    # When the notification is fanned out
    with pytest.raises(BatchEntryFailed) as raised:
        run(notification)

    # Then the failure reaches the caller, so the intake message is retried; the page was recorded before
    assert len(raised.value.failed) == 3
    assert run.topic.published == []
    assert run.status.fanned_out[notification.notification_id].delivery_count == 3

    # When the message comes back and SNS takes it this time
    run.topic.failing.clear()
    again = run(notification)

    # Then the retry finds its page recorded and publishes it: each delivery reaches its provider once
    assert again.repeated and len(again.jobs) == 3
    assert run.deliver_published() == {"user-42#laptop-mail": 1, "user-42#web-inbox": 1, "user-43#iphone": 1}


def test_no_devices_at_all_publishes_nothing_and_still_marks_fanned_out(notification, registry):
    # Given recipients none of whom has a device
    run = Run(registry)

    # When it is fanned out
    result = run(for_users(notification, "user-7", "user-8"))

    # Then nothing is queued or published, and the status can say "no devices"
    assert run.journal == ["status.record_page 00.000000"]
    assert result.jobs == []
    assert run.status.fanned_out[notification.notification_id].without_devices == ["user-7", "user-8"]
    assert run.status.get(notification.notification_id).status.value == "no_devices"


def test_a_duplicate_intake_message_publishes_again_and_each_delivery_is_sent_once(notification, registry):
    # Given a notification fanned out once, one of whose deliveries was sent already
    run = Run(registry)
    run(notification)
    first = run.topic.published[0]
    run.status.claim_delivery(first, "deliver/early", deadline())
    run.status.record_outcome(first, "deliver/early", DeliveryState.SENT, provider_message_id="provider-0")

    # When SQS delivers its intake message again
    again = run(notification)

    # Then the copy finds the page recorded and publishes it again (it cannot tell a duplicate from the retry of
    # a fan-out that stopped before publishing); the deliveries' claims let one copy of each reach its provider
    assert again.repeated and len(run.topic.published) == 6
    assert run.journal.count("status.record_page 00.000000") == 2
    assert first.delivery_id == "user-42#laptop-mail"
    assert run.deliver_published() == {"user-42#web-inbox": 1, "user-43#iphone": 1}
    assert run.status.delivery(notification.notification_id, first.delivery_id).status is DeliveryState.SENT


def test_a_cancel_first_leaves_the_fan_out_nothing_to_publish(notification, registry):
    # Given an accepted notification, cancelled before its fan-out
    run = Run(registry)
    run.status.record_accepted(notification)
    cancel = run.status.cancel(notification.notification_id)

    # When its intake message is fanned out
    result = run(notification)

    # Then the page's record is refused: nothing is published, held or continued, and the status reads cancelled
    assert cancel is Cancellation.CANCELLED
    assert result.cancelled and result.jobs == []
    assert run.topic.published == [] and run.intake.sent == []
    assert run.status.get(notification.notification_id).status.value == "cancelled"


def test_a_fan_out_first_makes_the_cancel_too_late(notification, registry):
    # Given an accepted notification whose first page fan-out recorded, and which crashed before publishing
    run = Run(registry, failing=[notification.notification_id])
    run.status.record_accepted(notification)
    with pytest.raises(BatchEntryFailed):
        run(notification)

    # When it is cancelled
    cancel = run.status.cancel(notification.notification_id)

    # Then it is too late (409): the record came first, so the returning message publishes every delivery
    assert cancel is Cancellation.TOO_LATE
    run.topic.failing.clear()
    run(notification)
    assert sorted(run.deliver_published().values()) == [1, 1, 1]


def test_a_fan_out_that_stopped_between_its_record_and_its_publish_is_published_by_the_retry(notification, registry):
    # Given a fan-out that recorded its page and died before publishing, one of whose deliveries was sent since
    # (an earlier copy of its message published it, say)
    run = Run(registry)
    jobs, outcome = plan_page(notification, registry, run.subscribers, PageLimits())
    assert run.status.record_page(notification, notification.page_key, outcome).written
    first = jobs[0]
    run.status.claim_delivery(first, "deliver/1", deadline())
    run.status.record_outcome(first, "deliver/1", DeliveryState.SENT, provider_message_id="provider-1")

    # When the intake message returns
    result = run(notification)

    # Then every job is published (nothing recorded is left unpublished), the sent one is not sent again
    assert result.repeated and len(result.jobs) == 3
    assert run.deliver_published() == {"user-42#web-inbox": 1, "user-43#iphone": 1}
    assert run.status.delivery(notification.notification_id, first.delivery_id).status is DeliveryState.SENT


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


PAGES_OF_10 = PageLimits(deliveries=10, users=100, lookups=4)


def paged(notification: Notification, users: int, devices: int = 1) -> tuple[FakeDeviceRegistry, Run, Notification]:
    """A registry of `users` recipients (user-0000 on) with `devices` each, a run over it, and the notification
    addressed to all of them."""
    registry = crowd(users, devices=devices)
    return registry, Run(registry), for_users(notification, *(f"user-{u:04d}" for u in range(users)))


# --- pages -----------------------------------------------------------------------------------------------


def test_an_audience_larger_than_a_page_is_fanned_out_page_by_page_each_device_once(notification):
    # Given 25 recipients with 2 devices each, and pages of at most 10 deliveries
    _, run, wide = paged(notification, 25, devices=2)
    limits = PAGES_OF_10

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
    limits = PAGES_OF_10

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


def test_a_retried_page_publishes_again_and_queues_its_successor_only_if_that_was_lost(notification):
    # Given a page that finished publishing, but whose invocation stopped before queueing the next page
    registry, run, wide = paged(notification, 15)
    limits = PAGES_OF_10
    jobs, outcome = plan_page(wide, registry, run.subscribers, limits)
    run.status.record_page(wide, wide.page_key, outcome)
    run.topic.publish(jobs)

    # When its message comes back
    again = run(wide, limits=limits)

    # Then its 10 jobs are published again (their claims send each once), and the next page is queued (and marked)
    assert again.repeated and len(run.topic.published) == 20
    [continuation] = run.intake.sent
    assert continuation.page is not None and continuation.page.index == 1

    # When the same message comes back once more
    run(wide, limits=limits)

    # Then the successor is not queued twice, so a duplicate cannot run down the chain; each delivery is sent once
    assert len(run.intake.sent) == 1
    delivered = run.deliver_published()
    assert len(delivered) == 10 and set(delivered.values()) == {1}


def test_a_page_that_crashed_mid_publish_resumes_from_its_own_cursor_without_touching_finished_pages(notification):
    # Given a 3-page fan-out whose first page finished and whose second crashed after publishing part of it
    registry, run, wide = paged(notification, 30)
    limits = PAGES_OF_10
    run(wide, limits=limits)
    [second] = run.intake.sent
    jobs, outcome = plan_page(second, registry, run.subscribers, limits)
    run.status.record_page(second, second.page_key, outcome)
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
    delivered = run.deliver_published()
    assert len(delivered) == 30 and set(delivered.values()) == {1}


def test_a_retried_page_keeps_the_boundary_its_record_set_when_the_audience_changed_since(notification):
    # Given a 2-page fan-out of 15 users with one device each, pages of 10, whose first page recorded (next page
    # from user-0010) and crashed before publishing; then user-0003 registers a second device
    registry, run, wide = paged(notification, 15)
    limits = PAGES_OF_10
    _, outcome = plan_page(wide, registry, run.subscribers, limits)
    run.status.record_page(wide, wide.page_key, outcome)
    registry.put(make_device("user-0003", "device-99", Channel.IN_APP))

    # When the first page's message comes back, and the page it queues runs
    run.drain(wide, limits)

    # Then the retry published up to the recorded boundary (11 jobs, though a page now holds 10): no user falls
    # between the pages, and every device of the 15 users is delivered exactly once
    assert outcome.next is not None and outcome.next.cursor.user == "user-0010"
    assert Counter(job.page for job in run.topic.published) == {"00.000000": 11, "00.000001": 5}
    delivered = run.deliver_published()
    assert len(delivered) == 16 and set(delivered.values()) == {1}


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


def test_a_topic_root_whose_message_comes_back_starts_its_chains_once_and_a_cancelled_one_none(notification):
    # Given a topic notification whose root page ran once, and another one cancelled before its fan-out
    run = Run(FakeDeviceRegistry(), FakeSubscribers({"news": ["user-0001"]}))
    broadcast = notification.model_copy(update={"recipients": None, "topic": "news"})
    cancelled = broadcast.model_copy(update={"notification_id": "cancelled-broadcast"})
    run.status.record_accepted(cancelled)
    assert run.status.cancel(cancelled.notification_id) is Cancellation.CANCELLED
    run(broadcast)

    # When the first root's message comes back, and the cancelled one's root runs
    again = run(broadcast)
    refused = run(cancelled)

    # Then the chains are not started twice (the root recorded them queued), and the cancelled one starts none
    assert again.repeated and len(run.intake.sent) == SUBSCRIBER_SHARDS
    assert refused.cancelled and {n.notification_id for n in run.intake.sent} == {broadcast.notification_id}
    assert run.topic.published == []


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
