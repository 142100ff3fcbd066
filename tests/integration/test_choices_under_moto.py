"""The adapters of preferences, cancel, read state and history, against the tables template.yaml makes, under moto."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from bench.capacity import WRITE_UNIT_BYTES, item_size
from herald.adapters.clients import client
from herald.adapters.history import DynamoHistory
from herald.adapters.inbox import DynamoInbox
from herald.adapters.profiles import DynamoProfileStore
from herald.adapters.status import DynamoStatusStore, HistoryPages
from herald.adapters.status_views import DynamoStatusReader
from herald.adapters.templates import DynamoRenderedContent
from herald.models.domain import Channel, DeliveryJob, Notification, PageCursor, PagePosition, Priority, now
from herald.models.inbox import HistoryEntry
from herald.models.preferences import Preferences
from herald.models.status import Cancellation, DeliveryPage, PageOutcome
from herald.models.templates import Rendering
from tests.integration.conftest import Deployed


def environment(deployed: Deployed) -> dict[str, str]:
    return deployed.environment("FanoutNormalFunction")


def in_app_job(user_id: str, notification_id: str, at: datetime) -> DeliveryJob:
    return DeliveryJob(
        notification_id=notification_id,
        user_id=user_id,
        device_id="web",
        channel=Channel.IN_APP,
        title="t",
        body="b",
        priority=Priority.NORMAL,
        accepted_at=at,
    )


def test_preferences_of_many_users_come_back_in_batches_of_a_hundred(deployed: Deployed) -> None:
    # Given 150 users, every third with preferences
    store = DynamoProfileStore(client("dynamodb"), environment(deployed)["PREFERENCES_TABLE"])
    users = [f"user-{n}" for n in range(150)]
    for user in users[::3]:
        store.put(user, Preferences(locale="fr", channels={Channel.SMS: False}))

    # When fan-out asks for all of them (with a repeat)
    found = store.get_many([*users, users[0]])

    # Then it gets exactly those, as stored
    assert set(found) == set(users[::3])
    assert found["user-3"] == Preferences(locale="fr", channels={Channel.SMS: False})


def test_a_cancel_and_a_fan_out_record_exclude_each_other(deployed: Deployed) -> None:
    # Given two accepted notifications to recipients, and one to a topic
    dynamodb, table = client("dynamodb"), environment(deployed)["STATUS_TABLE"]
    status = DynamoStatusStore(dynamodb, table, 30)
    at = now()
    accepted = {
        notification_id: Notification(
            notification_id=notification_id, recipients=["ada"], title="t", body="b", accepted_at=at
        )
        for notification_id in ("first", "second")
    }
    accepted["news"] = Notification(notification_id="news", topic="news", title="t", body="b", accepted_at=at)
    for notification in accepted.values():
        status.record_accepted(notification)

    # When the first is cancelled before fan-out records its first page, and the second recorded before its cancel
    assert status.cancel("first") is Cancellation.CANCELLED
    write_first = status.record_page(accepted["first"], "00.000000", PageOutcome(planned=["ada#web#in_app"]))
    write_second = status.record_page(accepted["second"], "00.000000", PageOutcome(planned=["ada#web#in_app"]))
    cancel_second = status.cancel("second")

    # Then the first's record finds it cancelled (its fan-out publishes nothing), the second's cancel is too late
    assert (write_first.written, write_first.cancelled) == (False, True)
    assert write_second.written and cancel_second is Cancellation.TOO_LATE
    assert status.cancel("first") is Cancellation.ALREADY_CANCELLED
    assert status.cancel("never-sent") is Cancellation.UNKNOWN
    # And a second record of a recorded page is refused, saying where the record ends and whether that is queued
    again = status.record_page(accepted["second"], "00.000000", PageOutcome())
    assert (again.written, again.cancelled, again.next, again.continued) == (False, False, None, False)
    # And a topic's cancel marks its root page, which its fan-out records first
    assert status.cancel("news") is Cancellation.CANCELLED
    assert status.record_page(accepted["news"], "root", PageOutcome(chains=16, paged=True)).cancelled
    reader = DynamoStatusReader(dynamodb, table)
    for notification_id in ("first", "news"):
        record = reader.get(notification_id)
        assert record is not None and record.status.value == "cancelled" and record.cancelled_at is not None
        assert reader.deliveries(notification_id, 10, None) == DeliveryPage(deliveries=[])
    record = reader.get("second")
    assert record is not None and record.status.value == "in_progress" and record.delivery_count == 1


def status_with_history(deployed: Deployed) -> tuple[Any, str, str, HistoryPages]:
    """The DynamoDB client, the status and history tables' names, and the history's page records."""
    dynamodb = client("dynamodb")
    table, history_table = environment(deployed)["STATUS_TABLE"], environment(deployed)["HISTORY_TABLE"]
    return dynamodb, table, history_table, HistoryPages(dynamodb, history_table)


def test_a_one_recipient_notifications_page_record_is_its_history_entry_and_still_races_the_cancel(
    deployed: Deployed,
) -> None:
    # Given two notifications the API recorded for ada alone (their page records go to her history)
    dynamodb, table, history_table, pages = status_with_history(deployed)
    status = DynamoStatusStore(dynamodb, table, 30, pages)
    at = now()
    accepted = {
        notification_id: Notification(
            notification_id=notification_id,
            recipients=["ada"],
            title="Your order has shipped",
            body="b",
            accepted_at=at + timedelta(seconds=n),
            page_in_history=True,
        )
        for n, notification_id in enumerate(("first", "second"))
    }
    for notification in accepted.values():
        assert status.record_accepted(notification).page_in_history

    def outcome(notification: Notification) -> PageOutcome:
        entry = HistoryEntry(
            notification_id=notification.notification_id,
            accepted_at=notification.accepted_at,
            fanned_out_at=now(),
            priority="normal",
            title=notification.title,
            channels=["push"],
            deliveries=3,
        )
        return PageOutcome(planned=[f"ada#phone-{n}#push" for n in range(3)], history_entry=entry)

    # When the first is cancelled before its fan-out records its page, and the second recorded before its cancel
    assert status.cancel("first") is Cancellation.CANCELLED
    write_first = status.record_page(accepted["first"], "00.000000", outcome(accepted["first"]))
    write_second = status.record_page(accepted["second"], "00.000000", outcome(accepted["second"]))
    cancel_second = status.cancel("second")

    # Then exactly one of each pair won, as with a page in the status table
    assert (write_first.written, write_first.cancelled, write_first.history_user) == (False, True, "ada")
    assert (write_second.written, write_second.history_user) == (True, "ada")
    assert cancel_second is Cancellation.TOO_LATE
    assert status.cancel("first") is Cancellation.ALREADY_CANCELLED
    # And neither has a page item in the status table: the record is ada's history item, one write unit
    for notification_id in accepted:
        items = dynamodb.query(
            TableName=table,
            KeyConditionExpression="notification_id = :n",
            ExpressionAttributeValues={":n": {"S": notification_id}},
        )["Items"]
        assert [item["sk"]["S"] for item in items] == ["notification"]
    [recorded] = [
        item
        for item in dynamodb.scan(TableName=history_table)["Items"]
        if item["sk"]["S"].endswith("#second") and item["user_id"]["S"] == "ada"
    ]
    assert "done_at" in recorded and "entry" in recorded
    assert item_size(recorded) <= WRITE_UNIT_BYTES
    # And ada's history lists the one fanned out, not the cancel's mark
    listed = DynamoHistory(dynamodb, history_table, lambda: 2_000_000_000).page("ada", 10, None)
    assert [(e.notification_id, e.deliveries) for e in listed.notifications] == [("second", 3)]
    # And the status reads both from there: one cancelled, one with its three deliveries queued
    reader = DynamoStatusReader(dynamodb, table, history=pages)
    first, second = reader.get("first"), reader.get("second")
    assert first is not None and first.status.value == "cancelled" and first.cancelled_at is not None
    assert second is not None and second.status.value == "in_progress" and second.delivery_count == 3
    assert second.fanned_out_at is not None
    listing = reader.deliveries("second", 2, None)
    assert listing is not None and [d.device_id for d in listing.deliveries] == ["phone-0", "phone-1"]
    rest = reader.deliveries("second", 2, listing.next_cursor)
    assert rest is not None and [d.device_id for d in rest.deliveries] == ["phone-2"]


def test_the_deliveries_of_a_one_recipient_notification_not_yet_fanned_out_read_its_accepted_record_once(
    deployed: Deployed,
) -> None:
    # Given a notification the API recorded for ada alone, whose fan-out has not recorded its page yet
    dynamodb, table, history_table, pages = status_with_history(deployed)
    notification = Notification(
        notification_id="waiting", recipients=["ada"], title="t", body="b", accepted_at=now(), page_in_history=True
    )
    assert DynamoStatusStore(dynamodb, table, 30, pages).record_accepted(notification).page_in_history

    # When its deliveries are read (each GetItem noted by botocore's hook, as the status-write tests count writes)
    read: list[tuple[str, str]] = []

    def note(params: dict[str, Any], **_: Any) -> None:
        read.append((params["TableName"], params["Key"]["sk"]["S"]))

    dynamodb.meta.events.register("provide-client-params.dynamodb.GetItem", note, unique_id="deliveries-reads")
    try:
        listing = DynamoStatusReader(dynamodb, table, history=pages).deliveries("waiting", 10, None)
    finally:
        dynamodb.meta.events.unregister("provide-client-params.dynamodb.GetItem", unique_id="deliveries-reads")

    # Then it is known, with no deliveries yet; its accepted record was read once, then the history item it names
    assert listing is not None and listing.deliveries == [] and listing.next_cursor is None
    key = f"{notification.accepted_at.isoformat()}#waiting"
    assert read == [(table, "notification"), (history_table, key)]


def test_a_page_recorded_with_a_successor_tells_a_second_copy_where_it_ends_and_whether_that_is_queued(
    deployed: Deployed,
) -> None:
    # Given the first page of a notification recorded with its next page starting at bob
    status = DynamoStatusStore(client("dynamodb"), environment(deployed)["STATUS_TABLE"], 30)
    notification = Notification(
        notification_id="wide", recipients=["ada", "bob"], title="t", body="b", accepted_at=now()
    )
    following = PagePosition(index=1, cursor=PageCursor(user="bob"))
    assert status.record_page(notification, "00.000000", PageOutcome(next=following, paged=True)).written

    # When a copy of its message records it again, before and after the next page is queued
    before = status.record_page(notification, "00.000000", PageOutcome())
    status.record_continued(notification, "00.000000")
    after = status.record_page(notification, "00.000000", PageOutcome())

    # Then both are refused with the recorded boundary, and only the second finds the next page queued
    assert (before.written, before.next, before.continued) == (False, following, False)
    assert (after.written, after.next, after.continued) == (False, following, True)


def test_read_state_survives_a_repeated_delivery_and_the_unread_count_follows_it(deployed: Deployed) -> None:
    # Given three in-app deliveries to ada, the first written twice (a redelivery)
    inbox = DynamoInbox(client("dynamodb"), environment(deployed)["INBOX_TABLE"])
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    jobs = [in_app_job("ada", f"n{n}", at + timedelta(seconds=n)) for n in range(3)]
    for job in [*jobs, jobs[0]]:
        inbox.add(job, expires_at=2_000_000_000)
    assert inbox.unread_count("ada") == 3

    # When the oldest is read, then delivered again
    oldest = inbox.page("ada", 10, None).items[-1]
    read = inbox.set_read("ada", oldest.item_id, True)
    inbox.add(jobs[0], expires_at=2_000_000_000)

    # Then it stays read, and the count does not go back up
    assert read is not None and read.read and read.read_at is not None
    assert [item.read for item in inbox.page("ada", 10, None).items] == [False, False, True]
    assert inbox.unread_count("ada") == 2

    # And marking unread counts it again; marking all read, two a call, takes two calls
    inbox.set_read("ada", oldest.item_id, False)
    assert inbox.unread_count("ada") == 3
    first, second = inbox.mark_all_read("ada", 2), inbox.mark_all_read("ada", 2)
    assert (first.marked, first.more, second.marked, second.more) == (2, True, 1, False)
    assert inbox.unread_count("ada") == 0
    assert inbox.set_read("ada", "bm9wZQ", True) is None  # an id that names no item


def test_history_pages_newest_first_and_a_repeat_overwrites(deployed: Deployed) -> None:
    # Given 30 notifications recorded in ada's history (more than one BatchWriteItem), the last twice
    history = DynamoHistory(client("dynamodb"), environment(deployed)["HISTORY_TABLE"], lambda: 2_000_000_000)
    at = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    entries = [
        (
            "ada",
            HistoryEntry(
                notification_id=f"n{n:02}", accepted_at=at + timedelta(seconds=n), fanned_out_at=at, priority="low"
            ),
        )
        for n in range(30)
    ]
    history.record(entries)
    history.record(entries[-1:])

    # When it is read a page at a time
    pages, cursor = [], None
    while True:
        page = history.page("ada", 12, cursor)
        pages.append([entry.notification_id for entry in page.notifications])
        cursor = page.next_cursor
        if cursor is None:
            break

    # Then every notification comes once, newest first
    listed = [notification_id for page in pages for notification_id in page]
    assert listed == [f"n{n:02}" for n in reversed(range(30))]
    assert [len(page) for page in pages][:2] == [12, 12]


def test_a_rendering_is_kept_beside_the_status_and_read_once_per_container(deployed: Deployed) -> None:
    # Given an accepted notification and its rendering
    dynamodb, table = client("dynamodb"), environment(deployed)["STATUS_TABLE"]
    status, content = DynamoStatusStore(dynamodb, table, 30), DynamoRenderedContent(dynamodb, table)
    status.record_accepted(Notification(notification_id="n-9", recipients=["ada"], accepted_at=now()))
    rendering = Rendering.model_validate({"template_id": "w", "locales": {"en": {"sms": {"text": "Hi Ada"}}}})
    content.put("n-9", rendering)

    # When a deliver container reads it, and the item is then gone
    first = content.get("n-9")
    dynamodb.delete_item(TableName=table, Key={"notification_id": {"S": "n-9#content"}, "sk": {"S": "content"}})

    # Then it read what was written, keeps it for the notification's other deliveries, and the status
    # Query of the notification's partition does not carry it
    assert first == rendering and content.get("n-9") == rendering
    assert DynamoRenderedContent(dynamodb, table).get("n-9") is None  # a fresh container finds it gone
    partition = dynamodb.query(
        TableName=table, KeyConditionExpression="notification_id = :n", ExpressionAttributeValues={":n": {"S": "n-9"}}
    )["Items"]
    assert [item["sk"]["S"] for item in partition] == ["notification"]
