"""Reading a notification's status from its partition: counts per status, and its deliveries page by page.

A notification of one fan-out page (at most a page of deliveries) is read whole: its delivery
items give every count. A paged one (a broadcast) is never read whole: its counts are the sum of
its tallies (one small item per deliver invocation and page) against what its pages planned, and
its deliveries are listed a page at a time from the planned lists, with one BatchGetItem for the
delivery items of each listing page. Anything in the table reads as a status or as "not found":
an item missing a field is left out, never an error.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from herald.adapters.inbox import InvalidCursor
from herald.adapters.status import (
    DELIVERY_PREFIX,
    PAGE_PREFIX,
    PLANNED_PREFIX,
    SUMMARY_SK,
    TALLY_PREFIX,
    partition_of,
)
from herald.models.domain import ROOT_PAGE, Channel, DeliveryState
from herald.models.status import (
    LISTED_NAMES,
    TALLIED_STATES,
    DeliveryPage,
    DeliveryRecord,
    NotificationRecord,
    overall_state,
)

LISTED_DELIVERIES = 100  # deliveries GET /notifications/{id} shows; the rest through the deliveries route
_PAGE_KEY = re.compile(r"^(root|\d{2}\.\d{6})$")
BATCH_GET_KEYS = 100


class DynamoStatusReader:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def get(self, notification_id: str) -> NotificationRecord | None:
        head = list(self._query(notification_id, "sk BETWEEN :a AND :b", SUMMARY_SK, PAGE_PREFIX + "\uffff"))
        summary = next((item for item in head if item.get("sk") == SUMMARY_SK), None)
        pages = {item["sk"][len(PAGE_PREFIX) :]: item for item in head if item.get("sk", "").startswith(PAGE_PREFIX)}
        if summary is None and not pages:
            return None
        request = _request(summary, pages)
        topic = request.get("topic") if isinstance(request.get("topic"), str) else None
        complete = fanned_out(pages, topic is not None or ROOT_PAGE in pages)
        done = [page for page in pages.values() if "done_at" in page]
        planned = sum(_int(page.get("planned_count")) for page in done)
        if any(page.get("paged") is True for page in done):
            counts = self._tally_counts(notification_id, planned, pages)
            listing = self.deliveries(notification_id, LISTED_DELIVERIES, None) or DeliveryPage(deliveries=[])
        else:
            records = self._records(notification_id, pages)
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
        return NotificationRecord(
            notification_id=notification_id,
            status=overall_state(fanned_out, counts),
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
        for key, page in self._pages_from(notification_id, start_page):
            any_page = True
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
        if not any_page and not cursor and not self._accepted(notification_id):
            return None
        return DeliveryPage(deliveries=self._with_status(found), next_cursor=next_cursor)

    # --- reading ---------------------------------------------------------------------------------------

    def _accepted(self, notification_id: str) -> bool:
        response = self._dynamodb.get_item(
            TableName=self._table,
            Key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
            ProjectionExpression="sk",
            ConsistentRead=True,
        )
        return "Item" in response

    def _records(self, notification_id: str, pages: dict[str, dict[str, Any]]) -> list[DeliveryRecord]:
        """Every delivery of a notification of one page: its items, then the planned ones not claimed yet."""
        claimed: dict[str, DeliveryRecord] = {}
        for item in self._query(notification_id, "begins_with(sk, :a)", DELIVERY_PREFIX):
            record = _record(item)
            if record is not None:
                claimed[f"{record.user_id}#{record.device_id}"] = record
        records = []
        for key, page in sorted(pages.items()):
            if key == ROOT_PAGE or "done_at" not in page:
                continue
            for entry in self._planned(notification_id, key, page):
                record = claimed.pop(_delivery_id(entry), None) or _queued(entry, page.get("done_at"))
                if record is not None:
                    records.append(record)
        return records + list(claimed.values())

    def _tally_counts(self, notification_id: str, planned: int, pages: dict[str, dict[str, Any]]) -> dict[str, int]:
        """The tallies of every chain's partition (one Query per chain), summed."""
        partitions = sorted({partition_of(notification_id, key) for key in pages if key != ROOT_PAGE})
        tallies = [
            tally for partition in partitions for tally in self._query(partition, "begins_with(sk, :a)", TALLY_PREFIX)
        ]
        return tally_counts(tallies, planned)

    def _with_status(self, found: list[tuple[str, datetime | None, str]]) -> list[DeliveryRecord]:
        where = list(dict.fromkeys((partition, _delivery_id(entry)) for entry, _, partition in found))
        items: dict[str, DeliveryRecord] = {}
        for start in range(0, len(where), BATCH_GET_KEYS):
            keys = [
                {"notification_id": {"S": partition}, "sk": {"S": DELIVERY_PREFIX + delivery_id}}
                for partition, delivery_id in where[start : start + BATCH_GET_KEYS]
            ]
            request: dict[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
            while request:
                response = self._dynamodb.batch_get_item(RequestItems=request)
                for raw in response.get("Responses", {}).get(self._table, []):
                    record = _record(_plain_item(raw))
                    if record is not None:
                        items[f"{record.user_id}#{record.device_id}"] = record
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

    def _pages_from(self, notification_id: str, start: str) -> Iterator[tuple[str, dict[str, Any]]]:
        for item in self._query(notification_id, "sk BETWEEN :a AND :b", PAGE_PREFIX + start, PAGE_PREFIX + "\uffff"):
            yield item["sk"][len(PAGE_PREFIX) :], item

    def _query(self, notification_id: str, condition: str, *values: str) -> Iterator[dict[str, Any]]:
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
                yield _plain_item(item)


def tally_counts(tallies: Iterable[dict[str, Any]], planned: int) -> dict[str, int]:
    """Counts per status of a paged notification: its tallies' sums; what they do not account for of
    the `planned` deliveries is queued (or being sent)."""
    totals: Counter[str] = Counter()
    recovered: dict[str, dict[str, Any]] = {}
    for item in tallies:
        totals.update({state: _int(n) for state, n in (item.get("counts") or {}).items()})
        recovered.update(item.get("recovered") or {})  # one dead invocation's change counts once
    for changes in recovered.values():
        totals.update({state: _int(n) for state, n in changes.items()})
    counts = {state.value: totals[state.value] for state in TALLIED_STATES if totals[state.value] > 0}
    queued = planned - sum(counts.values())
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


def _record(item: dict[str, Any]) -> DeliveryRecord | None:
    # An item without a status is one moto shows half-written (it applies an update's actions one by
    # one; DynamoDB writes are atomic): the planned list still stands for that delivery.
    if "status" not in item:
        return None
    try:
        return DeliveryRecord.model_validate(item)
    except ValidationError:
        return None


def _queued(entry: str, at: Any) -> DeliveryRecord | None:
    """A planned delivery ("<user>#<device>#<channel>") no deliver function has claimed yet."""
    parts = entry.split("#")
    if len(parts) != 3:
        return None
    user_id, device_id, channel = parts
    try:
        return DeliveryRecord(
            user_id=user_id,
            device_id=device_id,
            channel=Channel(channel),
            status=DeliveryState.QUEUED,
            queued_at=at,
            updated_at=at,
        )
    except ValueError:
        return None


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
    return entry.rsplit("#", 1)[0]


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
