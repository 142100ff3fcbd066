"""The status store in DynamoDB: what fan-out and delivery write about a notification, in its one partition.

Items of a notification (partition key `notification_id`), by sort key:

- `notification`: the accepted request (the API's one write).
- `page#<page>`: one per fan-out page (`root` for a topic's first page, else `<chain>.<index>`),
  created by one conditional write before the page publishes anything: what it will publish (the
  planned deliveries inline when they are few, else in `planned#<page>#<n>` items written just
  before; those it skipped or deferred listed with them, and counted), the recipients it found
  without devices, and where the next page starts; then `continued_at` once that is queued. A cancel
  writes `cancelled_at` on the notification's first page, only if no fan-out recorded it, and the
  fan-out's record requires no `cancelled_at`: exactly one of the two is written. A notification the API
  recorded for one recipient (`page_in_history` on its accepted record and its intake message) keeps its
  first page's record in that recipient's history item instead (HistoryTable, keyed by the user, then
  the accepted time and the notification): the record carries the recipient's history entry, so one
  write is both (HistoryPages).
- `recipient#<user>`: a recipient's deliveries of the notification, one map per device (`d#<device>`),
  written by deliver invocations only: one write claims the deliveries a batch holds for the recipient,
  one records their outcomes (docs/reliability.md, "Grouped status writes").
- `tally#<page>#<invocation>`: for a notification of more than one page, what one deliver
  invocation changed in that page's delivery statuses (herald.logic.tallies).

A broadcast's deliveries and tallies live in one partition per chain of pages, `<notification>#<chain>`
(partition_of; chain 0 in the notification's own), so its status writes spread over 16 partition keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from botocore.exceptions import ClientError

from herald.adapters.history import entry_attribute, history_key
from herald.adapters.status_choices import cancellation_refused, scheduling_attributes
from herald.models.domain import ROOT_PAGE, Channel, DeliveryJob, DeliveryState, Notification, PagePosition, now
from herald.models.status import (
    Cancellation,
    Claim,
    ClaimRequest,
    DeliveryEntry,
    OutcomeRecord,
    PageOutcome,
    PageWrite,
    claim_entry,
)

T = TypeVar("T")

SUMMARY_SK = "notification"
PAGE_IN_HISTORY = "page_in_history"  # the accepted record's mark: its first page's record is a history item
PAGE_PREFIX = "page#"
RECIPIENT_PREFIX = "recipient#"
DEVICE_PREFIX = "d#"  # a recipient item's attribute per device: "d#<device>"
CLAIM_ROUNDS = 4  # reads of a recipient item a claim tries before it calls its deliveries busy
PLANNED_PREFIX = "planned#"
TALLY_PREFIX = "tally#"
PLANNED_CHUNK_BYTES = 300_000  # of an item's 400 KB
# Planned deliveries up to this size live in the page item itself (one write for a small notification);
# more go to their own items, so that reading the pages of a broadcast stays cheap.
INLINE_PLANNED_BYTES = 1000


class TableItems:
    """Conditional updates and consistent reads of one table's items."""

    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def update(
        self,
        key: dict[str, Any],
        update: str,
        conditions: list[str],
        names: dict[str, str],
        values: dict[str, Any],
    ) -> ClientError | None:
        """An item's UpdateItem, conditional on every one of `conditions` (none: unconditional): None once
        written, else the refusal, whose response holds the item as it stood (ALL_OLD) when DynamoDB returned it."""
        request: dict[str, Any] = {
            "TableName": self._table,
            "Key": key,
            "UpdateExpression": update,
            "ExpressionAttributeValues": values,
        }
        if conditions:
            request["ConditionExpression"] = " AND ".join(conditions)
            request["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
        if names:
            request["ExpressionAttributeNames"] = names
        try:
            self._dynamodb.update_item(**request)
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return error
        return None

    def get(self, key: dict[str, Any]) -> dict[str, Any]:
        """An item, read strongly consistent (where a refusal did not return it); {} if there is none."""
        response = self._dynamodb.get_item(TableName=self._table, Key=key, ConsistentRead=True)
        item: dict[str, Any] = response.get("Item") or {}
        return item


class HistoryPages(TableItems):
    """A one-recipient notification's first page record, kept in its recipient's history item (the item is
    their history entry too, docs/performance.md, "Cost"): the fan-out writes it there, a cancel marks it,
    the status reads it."""


class DynamoStatusStore(TableItems):
    def __init__(self, dynamodb: Any, table: str, retention_days: int, history: HistoryPages | None = None):
        super().__init__(dynamodb, table)
        self._retention = timedelta(days=retention_days)
        # Where a one-recipient notification's first page record lives (Notification.page_in_history); without
        # it, every page record stays in the status table.
        self._history = history

    def expires_at(self) -> int:
        return int((now() + self._retention).timestamp())

    def record_accepted(self, notification: Notification) -> Notification:
        """The API's one write (conditional: an attempt redone under the same id keeps the first one's record,
        accepted time and page placement: every delivery's inbox item and history entry is keyed by the time,
        and a cancel looks for the first page where the record says it is)."""
        if notification.page_in_history and self._history is None:
            notification = notification.model_copy(update={"page_in_history": False})
        item: dict[str, Any] = {
            "notification_id": {"S": notification.notification_id},
            "sk": {"S": SUMMARY_SK},
            "request": {"S": request_of(notification)},
            "accepted_at": {"S": notification.accepted_at.isoformat()},
            "expires_at": {"N": str(self.expires_at())},
        }
        if notification.page_in_history:
            item[PAGE_IN_HISTORY] = {"BOOL": True}
        item.update(scheduling_attributes(notification, self._retention))
        try:
            self._dynamodb.put_item(
                TableName=self._table,
                Item=item,
                ConditionExpression="attribute_not_exists(sk)",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item") or self.get(_key(notification.notification_id, SUMMARY_SK))
            accepted_at = old.get("accepted_at", {}).get("S")
            return notification.model_copy(
                update={
                    "accepted_at": datetime.fromisoformat(accepted_at) if accepted_at else notification.accepted_at,
                    "page_in_history": old.get(PAGE_IN_HISTORY, {}).get("BOOL") is True,
                }
            )
        return notification

    def cancel(self, notification_id: str) -> Cancellation:
        """Cancelled unless fan-out recorded its first page: the cancel marks that page's item, whose record
        requires no cancel and comes before anything of the notification is published, so exactly one of the
        two wins, and a cancel that wins leaves nothing to send."""
        summary = self._dynamodb.get_item(
            TableName=self._table, Key=_key(notification_id, SUMMARY_SK), ConsistentRead=True
        ).get("Item")
        if not summary:
            return Cancellation.UNKNOWN
        pages, key = self._first_page_of(notification_id, summary)
        refused = pages.update(
            key,
            # The summary's expiry, counted from a schedule's send_at: the mark lasts as long as the request.
            "SET cancelled_at = :t, expires_at = :e",
            ["attribute_not_exists(cancelled_at)", "attribute_not_exists(done_at)"],
            {},
            {":t": {"S": now().isoformat()}, ":e": summary.get("expires_at") or {"N": str(self.expires_at())}},
        )
        if refused is not None:
            return cancellation_refused(refused.response.get("Item") or pages.get(key))
        return Cancellation.CANCELLED

    def _first_page_of(self, notification_id: str, summary: dict[str, Any]) -> tuple[TableItems, dict[str, Any]]:
        """Where the accepted record says its first page's record is: its recipient's history item, or the
        status table's page item (the table's items, and the key)."""
        request = summary.get("request", {}).get("S", "")
        place = history_place(
            notification_id,
            request,
            summary.get("accepted_at", {}).get("S"),
            summary.get(PAGE_IN_HISTORY, {}).get("BOOL") is True,
        )
        if place is not None and self._history is not None:
            return self._history, place
        return self, _key(notification_id, PAGE_PREFIX + first_page(request))

    def _page_item(self, notification: Notification, page: str) -> tuple[TableItems, dict[str, Any], str | None]:
        """Where a page's record is (the table's items, and the key), and the recipient whose history item it
        is, if it is one."""
        owner = notification.history_owner if page == notification.page_key else None
        if owner is not None and self._history is not None:
            key = history_key(owner, notification.accepted_at.isoformat(), notification.notification_id)
            return self._history, key, owner
        return self, _key(notification.notification_id, PAGE_PREFIX + page), None

    # --- fan-out pages ---------------------------------------------------------------------------

    def record_page(self, notification: Notification, page: str, outcome: PageOutcome) -> PageWrite:
        """The page's one write, before it publishes: fanned out (`done_at`) with what it will publish, unless
        a cancel or an earlier copy of its message wrote the item first. A long planned list goes first to
        items of its own, so whoever sees `done_at` sees all of it."""
        notification_id = notification.notification_id
        entries = outcome.entries()
        planned = ",".join(entries)
        values: dict[str, Any] = {
            ":t": {"S": now().isoformat()},
            ":e": {"N": str(self.expires_at())},
            ":n": {"N": str(outcome.delivery_count)},
            ":w": {"S": ",".join(outcome.without_devices)},
            ":wn": {"N": str(outcome.without_devices_count)},
            ":i": {"S": ",".join(outcome.inactive_skipped)},
            ":in": {"N": str(outcome.inactive_skipped_count)},
            ":paged": {"BOOL": outcome.paged},
            ":chains": {"N": str(outcome.chains)},
        }
        sets = [
            "done_at = :t",
            "expires_at = :e",
            "planned_count = :n",
            "without_devices = :w",
            "without_count = :wn",
            "inactive_skipped = :i",
            "inactive_count = :in",
            "paged = :paged",
            "chains = :chains",
        ]
        if len(planned) <= INLINE_PLANNED_BYTES:
            sets.append("planned = :p")
            values[":p"] = {"S": planned}
        else:
            chunks = _chunked(entries, PLANNED_CHUNK_BYTES)
            for index, chunk in enumerate(chunks):
                self._dynamodb.put_item(
                    TableName=self._table,
                    Item={
                        **_key(notification_id, f"{PLANNED_PREFIX}{page}#{index:04d}"),
                        "planned": {"S": ",".join(chunk)},
                        "expires_at": {"N": str(self.expires_at())},
                    },
                )
            sets.append("planned_chunks = :chunks")
            values[":chunks"] = {"S": ",".join(str(len(chunk)) for chunk in chunks)}
        if outcome.skipped:
            sets.append("skipped_count = :sn")
            values[":sn"] = {"N": str(len(outcome.skipped))}
        if outcome.deferred:
            # How many are deferred until when ("<epoch>:<count>,..."): the counts read them without the lists.
            sets += ["deferred_count = :dn", "deferred_until = :du"]
            values[":dn"] = {"N": str(len(outcome.deferred))}
            values[":du"] = {"S": ",".join(f"{at}:{n}" for at, n in sorted(outcome.deferred_times().items()))}
        if outcome.next is not None:
            sets.append("next = :next")
            values[":next"] = {"S": outcome.next.model_dump_json()}
        if notification.page is None or notification.page.index == 0:
            # A chain's first page also keeps what the status shows of the request (not the recipients,
            # which the accepted record holds, to keep this write small): a notification queued without
            # the API (an operator's message) has no accepted record, and its status is still readable.
            sets += ["request = :r", "accepted_at = :a"]
            values[":r"] = {"S": request_of(notification, recipients=False)}
            values[":a"] = {"S": notification.accepted_at.isoformat()}
        pages, key, owner = self._page_item(notification, page)
        if owner is not None and outcome.history_entry is not None:
            # The record is the recipient's history item: it is their entry too (one write, not two).
            sets.append("entry = :entry")
            values[":entry"] = entry_attribute(outcome.history_entry)
        # Every attribute by placeholder: several of these names (request, next) are DynamoDB reserved words.
        names = {f"#{assignment.split(' = ')[0]}": assignment.split(" = ")[0] for assignment in sets}
        sets = [f"#{assignment}" for assignment in sets]
        refused = pages.update(
            key,
            "SET " + ", ".join(sets),
            ["attribute_not_exists(done_at)", "attribute_not_exists(cancelled_at)"],
            names,
            values,
        )
        if refused is None:
            return PageWrite(written=True, history_user=owner)
        # The item that refused the write: it exists (it has `done_at` or `cancelled_at`), so DynamoDB returns it.
        old = refused.response.get("Item") or {}
        if not old:
            raise refused
        if "cancelled_at" in old:
            return PageWrite(written=False, cancelled=True, history_user=owner)
        return PageWrite(
            written=False,
            next=_position(old) if "next" in old else None,
            continued="continued_at" in old,
            history_user=owner,
        )

    def record_continued(self, notification: Notification, page: str) -> None:
        pages, key, _ = self._page_item(notification, page)
        pages.update(key, "SET continued_at = :t", [], {}, {":t": {"S": now().isoformat()}})

    # --- deliveries --------------------------------------------------------------------------------

    def claim_deliveries(self, requests: list[ClaimRequest], until: datetime, fresh: bool = True) -> list[Claim]:
        """The one write per recipient before the provider calls: claims its deliveries among `requests` and
        counts their attempts (herald.models.status.claim_entry decides each device; the write is granted only
        if no device changed since it was read). `fresh`: the deliveries are likely new (a first receive), so
        the first write assumes so and reads nothing; otherwise the item is read first. A refused claim
        (sent, failed, dead-lettered for a stray copy, or held by a live claim) never reaches a provider."""
        claims: list[Claim | None] = [None] * len(requests)
        for key, indexed in _by_item(requests, lambda request: request.job):
            for index, claim in zip(
                indexed, self._claim_item(key, [requests[i] for i in indexed], until, fresh), strict=True
            ):
                claims[index] = claim
        return [claim for claim in claims if claim is not None]

    def _claim_item(
        self, key: dict[str, Any], requests: list[ClaimRequest], until: datetime, fresh: bool
    ) -> list[Claim]:
        item: dict[str, Any] | None = None if fresh else self.get(key)
        for _ in range(CLAIM_ROUNDS):
            at = now()
            entries = _entries(item or {})
            claims: list[Claim] = []
            writes: dict[str, DeliveryEntry] = {}
            for request in requests:
                device = request.job.device_id
                if device in writes:  # a second copy of a delivery in the same group: the first holds it
                    claims.append(Claim(granted=False, busy_until=until, previous=DeliveryState.SENDING))
                    continue
                claim, claimed = claim_entry(entries.get(device), request, at, until)
                claims.append(claim)
                if claimed is not None:
                    writes[device] = claimed
            if not writes:
                return claims
            names: dict[str, str] = {}
            values: dict[str, Any] = {
                ":u": {"S": requests[0].job.user_id},
                ":e": {"N": str(self.expires_at())},
            }
            sets = ["user_id = :u", "expires_at = :e"]
            conditions = []
            for index, (device, claimed) in enumerate(writes.items()):
                names[f"#d{index}"] = DEVICE_PREFIX + device
                values[f":d{index}"] = {"M": _entry_item(claimed)}
                sets.append(f"#d{index} = :d{index}")
                old = entries.get(device)
                if old is None:
                    conditions.append(f"attribute_not_exists(#d{index})")
                else:
                    conditions.append(f"#d{index}.k = :k{index}")
                    values[f":k{index}"] = {"N": str(old.version)}
            refused = self.update(key, "SET " + ", ".join(sets), conditions, names, values)
            if refused is None:
                return claims
            # Another copy got there first, or the deliveries were not new: decide again from the item.
            item = refused.response.get("Item") or self.get(key)
        # Lost the race every round (several copies at once): busy, so the messages come back shortly.
        return [Claim(granted=False, busy_until=now() + timedelta(seconds=1)) for _ in requests]

    def record_outcomes(self, outcomes: list[OutcomeRecord]) -> list[bool]:
        """Records how each claimed attempt ended, one write per recipient, releasing the claims. False for a
        delivery whose claim was lost (it expired and another invocation took it over): that one's outcome stands."""
        recorded: list[bool] = [False] * len(outcomes)
        for key, indexed in _by_item(outcomes, lambda outcome: outcome.job):
            mine = [outcomes[i] for i in indexed]
            for index, done in zip(indexed, self._record_item(key, mine), strict=True):
                recorded[index] = done
        return recorded

    def _record_item(self, key: dict[str, Any], outcomes: list[OutcomeRecord]) -> list[bool]:
        pending = {outcome.job.device_id: outcome for outcome in outcomes}
        while pending:
            at = now()
            names: dict[str, str] = {}
            values: dict[str, Any] = {":t": {"N": str(_millis(at))}}
            sets: list[str] = []
            removes: list[str] = []
            conditions: list[str] = []
            for index, (device, outcome) in enumerate(pending.items()):
                d = f"#d{index}"
                names[d] = DEVICE_PREFIX + device
                values[f":k{index}"] = {"N": str(outcome.version)}
                values[f":v{index}"] = {"N": str(outcome.version + 1)}
                values[f":s{index}"] = {"S": outcome.state.value}
                conditions.append(f"{d}.k = :k{index}")
                sets += [f"{d}.s = :s{index}", f"{d}.t = :t", f"{d}.k = :v{index}"]
                removes.append(f"{d}.u")
                if outcome.error is not None:
                    sets.append(f"{d}.e = :e{index}")
                    values[f":e{index}"] = {"S": outcome.error[:1000]}
                if outcome.state is DeliveryState.SENT:
                    if outcome.error is None:
                        removes.append(f"{d}.e")  # what failed before does not describe a delivery that was sent
                    if outcome.provider_message_id:
                        sets.append(f"{d}.m = :m{index}")
                        values[f":m{index}"] = {"S": outcome.provider_message_id}
                if outcome.state is DeliveryState.DEAD_LETTERED:
                    # A redrive starts a fresh round; the mark is written before the message is parked, so
                    # its herald-dead-lettered-at is never earlier than this.
                    sets += [f"{d}.r = :zero", f"{d}.x = :t"]
                    values[":zero"] = {"N": "0"}
                if outcome.redriven:
                    sets += [f"{d}.w = :t", f"{d}.v = if_not_exists({d}.v, :zero) + :one"]
                    values[":zero"] = {"N": "0"}
                    values[":one"] = {"N": "1"}
            update = "SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes)
            refused = self.update(key, update, conditions, names, values)
            if refused is None:
                return [outcome.job.device_id in pending for outcome in outcomes]
            entries = _entries(refused.response.get("Item") or self.get(key))
            kept = {
                device: outcome
                for device, outcome in pending.items()
                if device in entries and entries[device].version == outcome.version
            }
            if len(kept) == len(pending):
                raise refused  # nothing lost, yet refused: not a race this write can resolve
            pending = kept
        return [False] * len(outcomes)

    # --- tallies -----------------------------------------------------------------------------------

    def tally_exists(self, notification_id: str, page: str, invocation: str) -> bool:
        response = self._dynamodb.get_item(
            TableName=self._table,
            Key=_key(partition_of(notification_id, page), tally_key(page, invocation)),
            ProjectionExpression="sk",
            ConsistentRead=True,
        )
        return "Item" in response

    def record_tally(
        self,
        notification_id: str,
        page: str,
        invocation: str,
        counts: Mapping[str, int],
        recovered: Mapping[str, Mapping[str, int]],
    ) -> None:
        item: dict[str, Any] = {
            **_key(partition_of(notification_id, page), tally_key(page, invocation)),
            "counts": {"M": {state: {"N": str(n)} for state, n in counts.items() if n}},
            "expires_at": {"N": str(self.expires_at())},
        }
        if recovered:
            item["recovered"] = {
                "M": {
                    key: {"M": {state: {"N": str(n)} for state, n in changes.items()}}
                    for key, changes in recovered.items()
                }
            }
        self._dynamodb.put_item(TableName=self._table, Item=item)


def request_of(notification: Notification, recipients: bool = True) -> str:
    """What the status shows of the request: its priority, audience and channels."""
    fields = {"priority", "topic", "channels"} | ({"recipients"} if recipients else set())
    return notification.model_dump_json(include=fields, exclude_none=True)


def history_place(
    notification_id: str, request: str, accepted_at: str | None, in_history: bool
) -> dict[str, Any] | None:
    """The history item holding a notification's first page record, from its accepted record: its one
    recipient's, keyed by the accepted time, when the record says so (`page_in_history`); else None."""
    if not in_history or not accepted_at:
        return None
    try:
        recipients = json.loads(request).get("recipients")
    except (ValueError, AttributeError):
        return None
    if not isinstance(recipients, list) or len(recipients) != 1 or not isinstance(recipients[0], str):
        return None
    return history_key(recipients[0], accepted_at, notification_id)


def first_page(request: str) -> str:
    """The page a notification's fan-out starts at, from its accepted request: a topic's root, else chain 0's first."""
    try:
        topic = json.loads(request).get("topic")
    except (ValueError, AttributeError):
        topic = None
    return ROOT_PAGE if topic is not None else PagePosition().key


def partition_of(notification_id: str, page: str | None) -> str:
    """Where a delivery (and a tally) of this page lives. A broadcast's are spread over its chains'
    partitions ("<notification>#<chain>"), so its million status writes are not all on one partition
    key (DynamoDB serves about 1,000 writes a second per partition). Chain 0 (a recipients list's only
    chain) stays in the notification's own partition, whether or not the page was paged: a page retried
    after a crash that reads a slightly different audience may decide otherwise, and a delivery's claim
    must be the same item however its job was published. Ids never hold '#': no notification id is one
    of these."""
    chain = page.split(".")[0] if page is not None and page != ROOT_PAGE else None
    return f"{notification_id}#{chain}" if chain is not None and chain != "00" else notification_id


def recipient_key(job: DeliveryJob) -> dict[str, Any]:
    """The status item of a notification's deliveries to one recipient: every copy of a delivery finds it."""
    return _key(partition_of(job.notification_id, job.page), RECIPIENT_PREFIX + job.user_id)


def _by_item(items: Sequence[T], job_of: Callable[[T], DeliveryJob]) -> list[tuple[dict[str, Any], list[int]]]:
    """The recipient status items `items` touch, each with the indexes of its items, in order."""
    grouped: dict[tuple[str, str], list[int]] = {}
    for index, item in enumerate(items):
        job = job_of(item)
        grouped.setdefault((partition_of(job.notification_id, job.page), job.user_id), []).append(index)
    return [(_key(partition, RECIPIENT_PREFIX + user), indexes) for (partition, user), indexes in grouped.items()]


def _entries(item: dict[str, Any]) -> dict[str, DeliveryEntry]:
    """Each device's entry of a recipient item, by device id (an entry that does not read is left out)."""
    entries = {}
    for name, value in item.items():
        if name.startswith(DEVICE_PREFIX) and "M" in value:
            entry = entry_of(value["M"])
            if entry is not None:
                entries[name[len(DEVICE_PREFIX) :]] = entry
    return entries


# A device's entry in DynamoDB: short names, since a recipient's item holds one per device and a write costs
# one unit per KB of the larger of the item before and after it.
_ENTRY_NAMES = {
    "status": "s",
    "channel": "c",
    "attempts": "n",
    "round_attempts": "r",
    "version": "k",
    "claimed_until": "u",
    "queued_at": "q",
    "updated_at": "t",
    "provider_message_id": "m",
    "last_error": "e",
    "dead_lettered_at": "x",
    "redrives": "v",
    "redriven_at": "w",
    "tally_by": "tb",
    "tally_until": "tu",
    "tally_from": "tf",
}
_NUMBERS = {
    "attempts",
    "round_attempts",
    "version",
    "claimed_until",
    "queued_at",
    "updated_at",
    "dead_lettered_at",
    "redrives",
    "redriven_at",
    "tally_until",
}


def _entry_item(entry: DeliveryEntry) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for field, short in _ENTRY_NAMES.items():
        value = getattr(entry, field)
        if value is None or (field == "redrives" and value == 0):
            continue
        item[short] = {"N": str(value)} if field in _NUMBERS else {"S": str(value)}
    return item


def entry_of(item: Mapping[str, Any]) -> DeliveryEntry | None:
    """A device's entry from its DynamoDB map (typed values), None if it does not read."""
    fields: dict[str, Any] = {}
    try:
        for field, short in _ENTRY_NAMES.items():
            value = item.get(short)
            if value is None:
                continue
            if field in _NUMBERS:
                fields[field] = int(value["N"])
            elif field == "status":
                fields[field] = DeliveryState(value["S"])
            elif field == "channel":
                fields[field] = Channel(value["S"])
            else:
                fields[field] = value["S"]
    except (KeyError, ValueError, TypeError):
        return None
    return DeliveryEntry(**fields)


def tally_key(page: str, invocation: str) -> str:
    return f"{TALLY_PREFIX}{page}#{invocation}"


def _position(old: dict[str, Any]) -> PagePosition:
    return PagePosition.model_validate_json(old["next"]["S"])


def _key(notification_id: str, sort_key: str) -> dict[str, Any]:
    return {"notification_id": {"S": notification_id}, "sk": {"S": sort_key}}


def _until(old: dict[str, Any], attribute: str) -> datetime | None:
    until = old.get(attribute, {}).get("N")
    return _from_millis(int(until)) if until else None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _chunked(entries: list[str], limit: int) -> list[list[str]]:
    chunks: list[list[str]] = []
    size = limit
    for entry in entries:
        if size + len(entry) + 1 > limit:
            chunks.append([])
            size = 0
        chunks[-1].append(entry)
        size += len(entry) + 1
    return chunks
