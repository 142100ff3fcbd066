"""Priority lanes and paged fan-out end to end, on local stacks of their own (hooks and parameters of their own).

What is shown is the order in which Herald handled things (a journal the hooks keep), never a timing.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from herald.logic.ports import ChannelSender, Publisher, StatusStore
from herald.models.domain import Channel, DeliveryJob
from herald_local.faults import SimulatedCrash
from herald_local.stack import LocalStack, StackOptions
from tests.e2e.conftest import API_KEY, FAST_RETRIES, Herald, ScriptedEmailOutage, eventually

pytestmark = pytest.mark.e2e


class Journal:
    """What the functions handled, in order: ("fanout", notification id, page) and ("deliver", notification id)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.entries: list[tuple[str, ...]] = []

    def add(self, *entry: str) -> None:
        with self._lock:
            self.entries.append(entry)

    def index(self, *entry: str) -> int:
        with self._lock:
            return self.entries.index(entry)

    def positions(self, kind: str, notification_ids: set[str]) -> list[int]:
        with self._lock:
            return [i for i, e in enumerate(self.entries) if e[0] == kind and e[1] in notification_ids]


class Gate:
    """Holds a lane's function at its first status call until opened (bounded, so a failing test never hangs)."""

    def __init__(self, opened: bool = False) -> None:
        self.opened = threading.Event()
        self.reached = threading.Event()
        if opened:
            self.opened.set()

    def wait(self) -> None:
        self.reached.set()
        self.opened.wait(timeout=120)


class GatedStatus:
    def __init__(self, status: StatusStore, gate: Gate, method: str):
        self._status = status
        self._gate = gate
        self._method = method

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._status, name)
        if name != self._method:
            return attribute

        def gated(*args: Any, **kwargs: Any) -> Any:
            self._gate.wait()
            return attribute(*args, **kwargs)

        return gated


class GatedSender:
    """Holds a deliver function at its in-app sends (an in-app first try makes no status call to hold it at)."""

    def __init__(self, sender: ChannelSender, gate: Gate):
        self._sender = sender
        self._gate = gate

    def send(self, job: DeliveryJob) -> str:
        self._gate.wait()
        return self._sender.send(job)


class JournaledTopic:
    def __init__(self, topic: Publisher, journal: Journal):
        self._topic = topic
        self._journal = journal

    def publish(self, jobs: list[DeliveryJob]) -> int:
        published = self._topic.publish(jobs)
        for notification_id, page in dict.fromkeys((job.notification_id, job.page or "00.000000") for job in jobs):
            self._journal.add("fanout", notification_id, page)
        return published


class JournaledSender:
    def __init__(self, sender: ChannelSender, journal: Journal):
        self._sender = sender
        self._journal = journal

    def send(self, job: DeliveryJob) -> str:
        message_id = self._sender.send(job)
        self._journal.add("deliver", job.notification_id)
        return message_id


@pytest.fixture(scope="module")
def lanes() -> Iterator[tuple[Herald, Journal, Gate, Gate, Gate]]:
    """A stack whose low lane can be held: its fan-out at its page records, its deliver function at its in-app sends;
    and whose high fan-out can be held at its page records (open until a test closes it)."""
    journal, low_fanout, low_deliver, high_fanout = Journal(), Gate(), Gate(), Gate(opened=True)

    def hook(function: str, dependencies: Any) -> Any:
        if function.startswith("Fanout"):
            dependencies = dataclasses.replace(dependencies, topic=JournaledTopic(dependencies.topic, journal))
        if function == "FanoutLowFunction":
            dependencies = dataclasses.replace(
                dependencies, status=GatedStatus(dependencies.status, low_fanout, "record_page")
            )
        if function == "FanoutHighFunction":
            dependencies = dataclasses.replace(
                dependencies, status=GatedStatus(dependencies.status, high_fanout, "record_page")
            )
        if function.startswith("Deliver"):
            senders = {
                **dependencies.senders,
                Channel.IN_APP: JournaledSender(dependencies.senders[Channel.IN_APP], journal),
            }
            dependencies = dataclasses.replace(dependencies, senders=senders)
        if function == "DeliverLowFunction":
            senders = {
                **dependencies.senders,
                Channel.IN_APP: GatedSender(dependencies.senders[Channel.IN_APP], low_deliver),
            }
            dependencies = dataclasses.replace(dependencies, senders=senders)
        return dependencies

    options = StackOptions(
        api_port=0,
        api_key=API_KEY,
        parameters={**FAST_RETRIES, "LowFanoutMaximumConcurrency": "2"},
        hook=hook,
        log_level="WARNING",
        stack_name=f"herald-lanes-{uuid.uuid4().hex[:8]}",
    )
    with LocalStack(options) as stack:
        try:
            yield Herald(stack, ScriptedEmailOutage()), journal, low_fanout, low_deliver, high_fanout
        finally:
            low_fanout.opened.set()
            low_deliver.opened.set()
            high_fanout.opened.set()


def test_a_high_notification_is_handled_before_a_queued_low_flood_at_every_hop(lanes) -> None:
    herald, journal, low_fanout, low_deliver, _ = lanes
    user = f"reset-{uuid.uuid4().hex[:6]}"
    herald.put_device(user, "phone", {"channel": "in_app"})
    readers = [f"reader-{uuid.uuid4().hex[:6]}" for _ in range(5)]
    for reader in readers:
        herald.put_device(reader, "web", {"channel": "in_app"})

    # Given a flood of 40 low-priority notifications whose fan-out is held at its first page: most wait in the
    # low intake queue (2 batches in flight at most)
    flood = {herald.send({"recipients": readers, "title": "News", "body": "b", "priority": "low"}) for _ in range(40)}
    assert low_fanout.reached.wait(timeout=30)

    # When a high-priority notification is sent
    first = herald.send({"recipients": [user], "title": "Code", "body": "1234", "priority": "high"})

    # Then it is fanned out and delivered while every low notification still waits for fan-out
    herald.wait_for_status(first, lambda s: s["status"] == "delivered", timeout=30)
    assert journal.positions("fanout", flood) == []

    # Given the flood then fanned out, its 200 deliveries held in the low queue by the low deliver function
    low_fanout.opened.set()
    eventually(lambda: len(journal.positions("fanout", flood)), lambda n: n == 40, timeout=60)
    assert low_deliver.reached.wait(timeout=30)

    # When a second high-priority notification is sent
    second = herald.send({"recipients": [user], "title": "Code", "body": "5678", "priority": "high"})

    # Then it is delivered before any of the flood's deliveries
    herald.wait_for_status(second, lambda s: s["status"] == "delivered", timeout=30)
    low_deliver.opened.set()
    eventually(lambda: len(journal.positions("deliver", flood)), lambda n: n == 200, timeout=120)
    assert journal.index("deliver", second) < min(journal.positions("deliver", flood))
    # And in the order of handling, each high notification's fan-out and delivery came before the flood's
    assert journal.index("fanout", first, "00.000000") < min(journal.positions("fanout", flood))
    assert journal.index("deliver", first) < min(journal.positions("deliver", flood))


def test_a_low_lane_gives_way_to_a_high_fan_out_in_flight(lanes) -> None:
    herald, journal, low_fanout, low_deliver, high_fanout = lanes
    precedence = herald.stack.precedence
    low_fanout.opened.set()  # this test holds only the high lane
    low_deliver.opened.set()
    user = f"code-{uuid.uuid4().hex[:6]}"
    reader = f"reader-{uuid.uuid4().hex[:6]}"
    herald.put_device(user, "phone", {"channel": "in_app"})
    herald.put_device(reader, "web", {"channel": "in_app"})
    # (a cap longer than the test, so the order shown is the precedence's and not the cap's)
    precedence.wait_cap, cap = 60.0, precedence.wait_cap
    try:
        # Given a high-priority notification whose fan-out is held in flight, at its page record
        high_fanout.opened.clear()
        high_fanout.reached.clear()
        high = herald.send({"recipients": [user], "title": "Code", "body": "1234", "priority": "high"})
        assert high_fanout.reached.wait(timeout=30)
        gave_way = precedence.yields(2).count

        # When a low-priority notification is sent
        low = herald.send({"recipients": [reader], "title": "News", "body": "b", "priority": "low"})

        # Then the low lane's work gives way, and is not fanned out while the high fan-out is in flight
        eventually(lambda: precedence.waiting[2], lambda n: n >= 1, timeout=30)
        assert journal.positions("fanout", {low}) == []
        # And once the high fan-out ends, both are delivered, the high one fanned out first
        high_fanout.opened.set()
        herald.wait_for_status(low, lambda s: s["status"] == "delivered", timeout=60)
        herald.wait_for_status(high, lambda s: s["status"] == "delivered", timeout=60)
        assert journal.index("fanout", high, "00.000000") < journal.index("fanout", low, "00.000000")
        assert precedence.yields(2).count > gave_way
    finally:
        precedence.wait_cap = cap
        high_fanout.opened.set()


class CrashOnce:
    """The fan-out's topic, crashing its process once, halfway through publishing page `page` of a notification."""

    def __init__(self, topic: Publisher, journal: Journal, page: str, crashed: threading.Event):
        self._topic = topic
        self._journal = journal
        self._page = page
        self.crashed = crashed  # shared by every container's copy: the process dies once in all

    def publish(self, jobs: list[DeliveryJob]) -> int:
        if jobs and jobs[0].page == self._page and not self.crashed.is_set():
            self.crashed.set()
            half = jobs[: len(jobs) // 2]
            self._topic.publish(half)
            self._record(half)
            raise SimulatedCrash(f"injected: the process died publishing page {self._page}")
        published = self._topic.publish(jobs)
        self._record(jobs)
        return published

    def _record(self, jobs: list[DeliveryJob]) -> None:
        for job in jobs:
            self._journal.add("published", job.notification_id, job.page or "", job.user_id)


def test_a_paged_fan_out_that_crashed_mid_page_resumes_without_sending_twice() -> None:
    # Given a stack whose fan-out pages hold 4 deliveries, whose fan-out invocations last at most 1 s (their
    # claims too) and whose intake messages come back 6 s after a crash, and whose normal fan-out crashes once,
    # halfway through publishing the second page
    journal = Journal()
    crashed = threading.Event()

    def hook(function: str, dependencies: Any) -> Any:  # called for each container the function starts
        if function == "FanoutNormalFunction":
            return dataclasses.replace(dependencies, topic=CrashOnce(dependencies.topic, journal, "00.000001", crashed))
        return dependencies

    options = StackOptions(
        api_port=0,
        api_key=API_KEY,
        parameters={
            **FAST_RETRIES,
            "FanoutPageDeliveries": "4",
            "FanoutTimeoutSeconds": "1",
            "IntakeQueueVisibilitySeconds": "6",
        },
        hook=hook,
        log_level="ERROR",
        stack_name=f"herald-crash-{uuid.uuid4().hex[:8]}",
    )
    with LocalStack(options) as stack:
        herald = Herald(stack, ScriptedEmailOutage())
        users = [f"user-{n:02d}-{uuid.uuid4().hex[:4]}" for n in range(12)]
        for user in users:
            herald.put_device(user, "mail", {"channel": "email", "address": f"{user}@example.com"})

        # When a notification to the 12 users (3 pages of 4) is sent
        notification_id = herald.send({"recipients": users, "title": "Receipt", "body": "Thanks", "priority": "normal"})

        # Then the crashed page comes back, is taken over and finished, and its successor runs
        status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered", timeout=90)
        assert crashed.is_set()
        assert (status["counts"], status["fanout_pages"]) == ({"sent": 12}, 3)
        # And every user got exactly one email, though half of the crashed page was published twice
        emails = Counter(m.to for m in herald.providers.emails() if m.to[0].startswith("user-"))
        assert emails == {(f"{user}@example.com",): 1 for user in users}
        published = Counter(entry[2:] for entry in journal.entries if entry[0] == "published")
        times_by_page: dict[str, list[int]] = {}
        for (page, _), times in sorted(published.items()):
            times_by_page.setdefault(page, []).append(times)
        # the finished first page was not published again; the crashed one resumed from its own cursor
        assert times_by_page == {"00.000000": [1] * 4, "00.000001": [2, 2, 1, 1], "00.000002": [1] * 4}
