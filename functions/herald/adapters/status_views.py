"""Reading a notification's status from its partition: counts per status, and its deliveries page by page.

A notification of one fan-out page (at most a page of deliveries) is read whole: its delivery
items give every count. A paged one (a broadcast) is never read whole: its counts are the sum of
its tallies (one small item per deliver invocation and page) against what its pages planned, and
its deliveries are listed a page at a time from the planned lists, with one BatchGetItem for the
delivery items of each listing page. Deliveries a page skipped or deferred are in its list with their
reason or release time, and counted on the page: `skipped` for good, `deferred` until their time (then
`queued` until a deliver function claims them). Anything in the table reads as a status or as "not
found": an item missing a field is left out, never an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from functools import cache
from typing import Any

from pydantic import ValidationError

from herald.adapters.inbox import InvalidCursor
from herald.adapters.status import (
    DEVICE_PREFIX,
    PAGE_IN_HISTORY,
    PAGE_PREFIX,
    PLANNED_PREFIX,
    RECIPIENT_PREFIX,
    SUMMARY_SK,
    TALLY_PREFIX,
    HistoryPages,
    entry_of,
    history_place,
    partition_of,
)
from herald.logic.ports import InboxDeliveries
from herald.models.domain import ROOT_PAGE, Channel, DeliveryState, PagePosition, now
from herald.models.inbox import InboxDelivery
from herald.models.status import (
    DEFERRED_MARK,
    LISTED_NAMES,
    SKIPPED_MARK,
    TALLIED_STATES,
    DeliveryEntry,
    DeliveryPage,
    DeliveryRecord,
    NotificationRecord,
    from_millis,
    overall_state,
)

LISTED_DELIVERIES = 100  # deliveries GET /notifications/{id} shows; the rest through the deliveries route
_PAGE_KEY = re.compile(r"^(root|\d{2}\.\d{6})$")
BATCH_GET_KEYS = 100


class DynamoStatusReader:
    """`inbox`: where an in-app delivery sent on its first try is recorded (its inbox item); without it, such a
    delivery reads as queued."""

    def __init__(
        self, dynamodb: Any, table: str, inbox: InboxDeliveries | None = None, history: HistoryPages | None = None
    ):
        self._dynamodb = dynamodb
        self._table = table
        self._inbox = inbox
        self._history = history  # where a one-recipient notification's first page record is

    def get(self, notification_id: str) -> NotificationRecord | None:
        head = list(self._query(notification_id, "sk BETWEEN :a AND :b", SUMMARY_SK, PAGE_PREFIX + "\uffff"))
        summary = next((item for item in head if item.get("sk") == SUMMARY_SK), None)
        pages = {item["sk"][len(PAGE_PREFIX) :]: item for item in head if item.get("sk", "").startswith(PAGE_PREFIX)}
        first = self._history_page(notification_id, summary)
        if first is not None:
            pages[FIRST_PAGE] = first
        if summary is None and not pages:
            return None
        request = _request(summary, pages)
        topic = request.get("topic") if isinstance(request.get("topic"), str) else None
        complete = fanned_out(pages, topic is not None or ROOT_PAGE in pages)
        done = [page for page in pages.values() if "done_at" in page]
        planned = sum(_int(page.get("planned_count")) for page in done)
        if any(page.get("paged") is True for page in done):
            counts = self._tally_counts(notification_id, planned, pages, held_counts(done, now()))
            listing = self.deliveries(notification_id, LISTED_DELIVERIES, None) or DeliveryPage(deliveries=[])
        else:
            accepted_at = (summary or {}).get("accepted_at") or _first(pages, "accepted_at")
            records = self._in_inbox(notification_id, accepted_at, self._records(notification_id, pages))
            counts = dict(Counter(record.status.value for record in records))
            listing = DeliveryPage(
                deliveries=records[:LISTED_DELIVERIES],
                next_cursor=_cursor(_first_page(pages), LISTED_DELIVERIES)
                if len(records) > LISTED_DELIVERIES
                else None,
            )
        described = {
            "priority": request.get("priority"),
            "recipients": request.get("recipients"),
            "topic": topic,
            "channels": request.get("channels"),
            "accepted_at": (summary or {}).get("accepted_at") or _first(pages, "accepted_at"),
            "category": (summary or {}).get("category"),
            "template": (summary or {}).get("template"),
            "send_at": (summary or {}).get("send_at"),
            "cancelled_at": _first(pages, "cancelled_at"),
        }
        try:
            return self._view(notification_id, described, complete, counts, done, pages, listing)
        except ValidationError:
            # A request written by something other than Herald's API: show what follows from the pages.
            return self._view(notification_id, {}, complete, counts, done, pages, listing)

    def _view(
        self,
        notification_id: str,
        described: dict[str, Any],
        fanned_out: bool,
        counts: dict[str, int],
        done: list[dict[str, Any]],
        pages: dict[str, dict[str, Any]],
        listing: DeliveryPage,
    ) -> NotificationRecord:
        send_at = _instant(described.get("send_at"))
        return NotificationRecord(
            notification_id=notification_id,
            status=overall_state(
                fanned_out,
                counts,
                scheduled=send_at is not None and send_at > now(),
                cancelled=any("cancelled_at" in page for page in pages.values()),
            ),
            **described,
            fanned_out_at=max((str(page["done_at"]) for page in done), default=None) if fanned_out else None,
            fanout_pages=len([page for key, page in pages.items() if key != ROOT_PAGE and "done_at" in page]),
            recipients_without_devices=_names(done, "without_devices"),
            delivery_count=sum(_int(page.get("planned_count")) for page in done),
            recipients_without_devices_count=sum(_int(page.get("without_count")) for page in done),
            inactive_devices_skipped=_names(done, "inactive_skipped"),
            inactive_devices_skipped_count=sum(_int(page.get("inactive_count")) for page in done),
            counts=counts,
            deliveries=listing.deliveries,
            next_cursor=listing.next_cursor,
        )

    def deliveries(self, notification_id: str, limit: int, cursor: str | None) -> DeliveryPage | None:
        """Up to `limit` deliveries in the order fan-out planned them, from `cursor` on. Stops at a page
        still being fanned out (its cursor resumes there); None if the notification has no page at all."""
        start_page, offset = _decode(cursor) if cursor else ("", 0)
        found: list[tuple[str, datetime | None, str]] = []  # planned entries, their page's done time and partition
        next_cursor = None
        any_page = False
        paged = False
        accepted_at = None  # what a chain's first page keeps of the request: the inbox items are keyed by it
        summary = cache(lambda: self._summary(notification_id))  # read once, and only if needed
        for key, page in self._pages_from(notification_id, start_page, summary):
            any_page = True
            paged = paged or page.get("paged") is True
            accepted_at = accepted_at or page.get("accepted_at")
            if "cancelled_at" in page:
                break  # cancelled before fan-out: it has no deliveries, and never will
            if key == ROOT_PAGE:
                continue
            if "done_at" not in page:
                next_cursor = _cursor(key, 0)
                break
            entries = self._planned(notification_id, key, page)
            skip = offset if key == start_page else 0
            room = limit - len(found)
            partition = partition_of(notification_id, key) if page.get("paged") is True else notification_id
            found += [(entry, page.get("done_at"), partition) for entry in entries[skip : skip + room]]
            if skip + room < len(entries):
                next_cursor = _cursor(key, skip + room)
                break
            if len(found) >= limit:
                next_cursor = _cursor(key, len(entries))
                break
        if not any_page and not cursor and summary() is None:
            return None
        records = self._with_status(found)
        if not paged and records:  # a broadcast's deliveries are all claimed: tallies count them
            records = self._in_inbox(notification_id, accepted_at, records)
        return DeliveryPage(deliveries=records, next_cursor=next_cursor)

    def _in_inbox(self, notification_id: str, accepted_at: Any, records: list[DeliveryRecord]) -> list[DeliveryRecord]:
        """The records, with each in-app delivery found in its inbox read as sent: the item is its record."""
        if self._inbox is None or not isinstance(accepted_at, str):
            return records
        asked = {
            index: InboxDelivery(record.user_id, notification_id, record.device_id, accepted_at)
            for index, record in enumerate(records)
            if record.channel is Channel.IN_APP and record.status not in _NOT_IN_AN_INBOX
        }
        if not asked:
            return records
        found = self._inbox.delivered(list(asked.values()))
        read = list(records)
        for index, delivery in asked.items():
            if delivery in found:
                read[index] = inbox_sent(records[index], from_millis(found[delivery]) if found[delivery] else None)
        return read

    # --- reading ---------------------------------------------------------------------------------------

    def _summary(self, notification_id: str) -> dict[str, Any] | None:
        """What the accepted record says of where its first page is; None if there is no accepted record."""
        response = self._dynamodb.get_item(
            TableName=self._table,
            Key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
            ProjectionExpression="sk, #request, accepted_at, page_in_history",  # "request" is a reserved word
            ExpressionAttributeNames={"#request": "request"},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return _plain_item(item) if item else None

    def _history_page(self, notification_id: str, summary: dict[str, Any] | None) -> dict[str, Any] | None:
        """The first page's record, when the accepted record says it is its one recipient's history item."""
        if self._history is None or summary is None:
            return None
        request = summary.get("request")
        accepted_at = summary.get("accepted_at")
        key = history_place(
            notification_id,
            request if isinstance(request, str) else "",
            accepted_at if isinstance(accepted_at, str) else None,
            summary.get(PAGE_IN_HISTORY) is True,
        )
        if key is None:
            return None
        item = self._history.get(key)
        return _plain_item(item) if item else None

    def _records(self, notification_id: str, pages: dict[str, dict[str, Any]]) -> list[DeliveryRecord]:
        """Every delivery of a notification of one page: its items, then the planned ones not claimed yet."""
        claimed: dict[str, DeliveryRecord] = {}
        for item in self._query(notification_id, "begins_with(sk, :a)", RECIPIENT_PREFIX, plain=False):
            for held in recipient_records(item):
                claimed[f"{held.user_id}#{held.device_id}"] = held
        records = []
        for key, page in sorted(pages.items()):
            if key == ROOT_PAGE or "done_at" not in page:
                continue
            for entry in self._planned(notification_id, key, page):
                record = claimed.pop(_delivery_id(entry), None) or _queued(entry, page.get("done_at"))
                if record is not None:
                    records.append(record)
        return records + list(claimed.values())

    def _tally_counts(
        self, notification_id: str, planned: int, pages: dict[str, dict[str, Any]], held: dict[str, int]
    ) -> dict[str, int]:
        """The tallies of every chain's partition (one Query per chain), summed, with what the pages held."""
        partitions = sorted({partition_of(notification_id, key) for key in pages if key != ROOT_PAGE})
        tallies = [
            tally for partition in partitions for tally in self._query(partition, "begins_with(sk, :a)", TALLY_PREFIX)
        ]
        return tally_counts(tallies, planned, held)

    def _with_status(self, found: list[tuple[str, datetime | None, str]]) -> list[DeliveryRecord]:
        # One item per recipient holds all of its deliveries of the notification.
        where = list(dict.fromkeys((partition, entry.split("#", 1)[0]) for entry, _, partition in found))
        items: dict[str, DeliveryRecord] = {}
        for start in range(0, len(where), BATCH_GET_KEYS):
            keys = [
                {"notification_id": {"S": partition}, "sk": {"S": RECIPIENT_PREFIX + user_id}}
                for partition, user_id in where[start : start + BATCH_GET_KEYS]
            ]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._dynamodb.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self._table, []):
                    for held in recipient_records(raw):
                        items[f"{held.user_id}#{held.device_id}"] = held
                request = response.get("UnprocessedKeys") or {}
        records = []
        for entry, done_at, _ in found:
            record = items.get(_delivery_id(entry)) or _queued(entry, done_at)
            if record is not None:
                records.append(record)
        return records

    def _planned(self, notification_id: str, key: str, page: dict[str, Any]) -> list[str]:
        if "planned" in page:
            return _entries(page.get("planned"))
        if "planned_chunks" not in page:
            return []
        entries: list[str] = []
        for chunk in self._query(notification_id, "begins_with(sk, :a)", f"{PLANNED_PREFIX}{key}#"):
            entries += _entries(chunk.get("planned"))
        return entries

    def _pages_from(
        self, notification_id: str, start: str, summary: Callable[[], dict[str, Any] | None]
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """The pages from `start` on, in order. Where the status table lacks the first page, the accepted record
        (`summary`, read when called) may say it is its one recipient's history item: only then are the two read."""
        items = self._query(notification_id, "sk BETWEEN :a AND :b", PAGE_PREFIX + start, PAGE_PREFIX + "\uffff")
        head = next(items, None)
        if start <= FIRST_PAGE and (head is None or head["sk"] != PAGE_PREFIX + FIRST_PAGE):
            first = self._history_page(notification_id, summary())
            if first is not None:
                yield FIRST_PAGE, first
        if head is not None:
            yield head["sk"][len(PAGE_PREFIX) :], head
        for item in items:
            yield item["sk"][len(PAGE_PREFIX) :], item

    def _query(
        self, notification_id: str, condition: str, *values: str, plain: bool = True
    ) -> Iterator[dict[str, Any]]:
        names = [":a", ":b"][: len(values)]
        paginator = self._dynamodb.get_paginator("query")
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression=f"notification_id = :n AND {condition}",
            ExpressionAttributeValues={
                ":n": {"S": notification_id},
                **{name: {"S": value} for name, value in zip(names, values, strict=True)},
            },
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                yield _plain_item(item) if plain else item


FIRST_PAGE = PagePosition().key  # a recipients list's first page


def tally_counts(tallies: Iterable[dict[str, Any]], planned: int, held: dict[str, int] | None = None) -> dict[str, int]:
    """Counts per status of a paged notification: its tallies' sums; what they do not account for of
    the `planned` deliveries is queued (or being sent), but for those `held` says are still deferred
    (skipped ones, in `held` too, are not among the planned)."""
    totals: Counter[str] = Counter()
    recovered: dict[str, dict[str, Any]] = {}
    for item in tallies:
        totals.update({state: _int(n) for state, n in (item.get("counts") or {}).items()})
        recovered.update(item.get("recovered") or {})  # one dead invocation's change counts once
    for changes in recovered.values():
        totals.update({state: _int(n) for state, n in changes.items()})
    counts = {state.value: totals[state.value] for state in TALLIED_STATES if totals[state.value] > 0}
    counts.update({state: n for state, n in (held or {}).items() if n > 0})
    queued = planned - sum(n for state, n in counts.items() if state != DeliveryState.SKIPPED.value)
    if queued > 0:
        counts[DeliveryState.QUEUED.value] = queued
    return counts


def _plain_item(item: dict[str, Any]) -> dict[str, Any]:
    return {name: _plain(value) for name, value in item.items()}


def _plain(value: dict[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        return int(value["N"]) if value["N"].lstrip("-").isdigit() else float(value["N"])
    if "BOOL" in value:
        return bool(value["BOOL"])
    if "M" in value:
        return {name: _plain(inner) for name, inner in value["M"].items()}
    return None


def recipient_records(item: dict[str, Any]) -> list[DeliveryRecord]:
    """The deliveries a recipient's status item holds (DynamoDB's typed values), one record per device. A
    device entry that does not read (or has no status) is left out: the planned list still stands for it."""
    user_id = item.get("user_id", {}).get("S")
    if not user_id:
        return []
    records = []
    for name, value in item.items():
        if not name.startswith(DEVICE_PREFIX) or "M" not in value:
            continue
        entry = entry_of(value["M"])
        if entry is not None:
            record = delivery_record(user_id, name[len(DEVICE_PREFIX) :], entry)
            if record is not None:
                records.append(record)
    return records


def delivery_record(user_id: str, device_id: str, entry: DeliveryEntry) -> DeliveryRecord | None:
    """What the API shows of one device's delivery entry."""
    if entry.status is None or entry.channel is None:
        return None
    updated = from_millis(entry.updated_at) if entry.updated_at is not None else None
    return DeliveryRecord(
        user_id=user_id,
        device_id=device_id,
        channel=entry.channel,
        status=entry.status,
        attempts=entry.attempts,
        last_error=entry.last_error,
        provider_message_id=entry.provider_message_id,
        redrives=entry.redrives,
        queued_at=from_millis(entry.queued_at) if entry.queued_at is not None else None,
        updated_at=updated,
        sent_at=updated if entry.status is DeliveryState.SENT else None,  # nothing changes a sent delivery after
        redriven_at=from_millis(entry.redriven_at) if entry.redriven_at is not None else None,
    )


# An in-app delivery in these states has no inbox item to look for (sent: its record says so already).
_NOT_IN_AN_INBOX = frozenset({DeliveryState.SENT, DeliveryState.SKIPPED, DeliveryState.DEFERRED})


def inbox_sent(record: DeliveryRecord, delivered_at: datetime | None) -> DeliveryRecord:
    """An in-app delivery whose inbox item exists: sent, when the item was written (a first try that sent it
    made no status write; a later try's record may lag behind the item)."""
    at = delivered_at or record.updated_at
    return record.model_copy(
        update={
            "status": DeliveryState.SENT,
            "attempts": max(record.attempts, 1),
            "last_error": None,
            "updated_at": at,
            "sent_at": at,
        }
    )


def _queued(entry: str, at: Any) -> DeliveryRecord | None:
    """A planned delivery ("<user>#<device>#<channel>") no deliver function has claimed yet; or one the
    page skipped ("...#s<reason>") or deferred ("...#d<epoch seconds>": deferred until then, queued after)."""
    parts = entry.split("#", 3)
    if len(parts) not in (3, 4):
        return None
    user_id, device_id, channel = parts[:3]
    mark = parts[3] if len(parts) == 4 else ""
    fields: dict[str, Any] = {"status": DeliveryState.QUEUED, "queued_at": at}
    try:
        if mark.startswith(SKIPPED_MARK):
            fields = {"status": DeliveryState.SKIPPED, "reason": mark[len(SKIPPED_MARK) :]}
        elif mark.startswith(DEFERRED_MARK):
            release = datetime.fromtimestamp(int(mark[len(DEFERRED_MARK) :]), tz=UTC)
            waiting = release > now()
            fields = {
                "status": DeliveryState.DEFERRED if waiting else DeliveryState.QUEUED,
                "deferred_until": release,
                "queued_at": None if waiting else release,
            }
        elif mark:
            return None
        return DeliveryRecord(user_id=user_id, device_id=device_id, channel=Channel(channel), updated_at=at, **fields)
    except ValueError:
        return None


def held_counts(pages: list[dict[str, Any]], at: datetime) -> dict[str, int]:
    """What finished pages skipped, and deferred until after `at`, as counts per status."""
    skipped = sum(_int(page.get("skipped_count")) for page in pages)
    deferred = 0
    for page in pages:
        for pair in _entries(page.get("deferred_until")):
            until, _, count = pair.partition(":")
            if _int(until) > at.timestamp():
                deferred += _int(count)
    held = {DeliveryState.SKIPPED.value: skipped, DeliveryState.DEFERRED.value: deferred}
    return {state: n for state, n in held.items() if n}


def planned_records(planned: list[str], claimed: set[str], at: Any) -> list[DeliveryRecord]:
    """Queued records for planned deliveries not claimed yet (the fakes read their planned lists so)."""
    records = [_queued(entry, at) for entry in planned if _delivery_id(entry) not in claimed]
    return [record for record in records if record is not None]


def _request(summary: dict[str, Any] | None, pages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The accepted request, or what a chain's first page kept of it (a message queued without the API)."""
    for text in [(summary or {}).get("request"), *(page.get("request") for _, page in sorted(pages.items()))]:
        if isinstance(text, str):
            try:
                request = json.loads(text)
            except ValueError:
                continue
            if isinstance(request, dict):
                return request
    return {}


def fanned_out(pages: dict[str, dict[str, Any]], topic: bool) -> bool:
    """Every chain of pages ran to its last page."""
    if topic:
        root = pages.get(ROOT_PAGE)
        if root is None or "done_at" not in root:
            return False
        chains = range(_int(root.get("chains")))
    else:
        chains = range(1)
    for chain in chains:
        mine = [page for key, page in sorted(pages.items()) if key.startswith(f"{chain:02d}.")]
        if not mine or any("done_at" not in page for page in mine) or "next" in mine[-1]:
            return False
    return True


def _first_page(pages: dict[str, dict[str, Any]]) -> str:
    return min((key for key in pages if key != ROOT_PAGE), default="00.000000")


def _first(pages: dict[str, dict[str, Any]], attribute: str) -> Any:
    return next((page[attribute] for _, page in sorted(pages.items()) if attribute in page), None)


def _names(pages: list[dict[str, Any]], attribute: str) -> list[str]:
    names: list[str] = []
    for page in pages:
        names += _entries(page.get(attribute))
    return names[:LISTED_NAMES]


def _entries(joined: Any) -> list[str]:
    return [entry for entry in str(joined or "").split(",") if entry]


def _delivery_id(entry: str) -> str:
    return "#".join(entry.split("#", 2)[:2])


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _cursor(page: str, offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"page": page, "offset": offset}).encode()).decode()


def _decode(cursor: str) -> tuple[str, int]:
    try:
        position = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        page, offset = position["page"], position["offset"]
    except (binascii.Error, ValueError, KeyError, TypeError) as error:
        raise InvalidCursor("cursor is not one this API returned") from error
    if not isinstance(page, str) or not _PAGE_KEY.match(page) or not isinstance(offset, int) or offset < 0:
        raise InvalidCursor("cursor is not one this API returned")
    return page, offset
