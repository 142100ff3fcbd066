"""The status store in DynamoDB: what fan-out and delivery write about a notification, in its one partition.

Items of a notification (partition key `notification_id`), by sort key:

- `notification`: the accepted request (the API's one write).
- `page#<page>`: one per fan-out page (`root` for a topic's first page, else `<chain>.<index>`),
  created by one conditional write before the page publishes anything: what it will publish (the
  planned deliveries inline when they are few, else in `planned#<page>#<n>` items written just
  before; those it skipped or deferred listed with them, and counted), the recipients it found
  without devices, and where the next page starts; then `continued_at` once that is queued. A cancel
  writes `cancelled_at` on the notification's first page, only if no fan-out recorded it, and the
  fan-out's record requires no `cancelled_at`: exactly one of the two is written.
- `delivery#<user>#<device>`: one per delivery, written by its claim and its outcome only.
- `tally#<page>#<invocation>`: for a notification of more than one page, what one deliver
  invocation changed in that page's delivery statuses (herald.logic.tallies).

A broadcast's deliveries and tallies live in one partition per chain of pages, `<notification>#<chain>`
(partition_of; chain 0 in the notification's own), so its status writes spread over 16 partition keys.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from herald.adapters.status_choices import cancellation_refused, scheduling_attributes
from herald.models.domain import ROOT_PAGE, DeliveryJob, DeliveryState, Notification, PagePosition, now
from herald.models.status import Cancellation, Claim, PageOutcome, PageWrite, Transition

SUMMARY_SK = "notification"
PAGE_PREFIX = "page#"
DELIVERY_PREFIX = "delivery#"
PLANNED_PREFIX = "planned#"
TALLY_PREFIX = "tally#"
PLANNED_CHUNK_BYTES = 300_000  # of an item's 400 KB
# Planned deliveries up to this size live in the page item itself (one write for a small notification);
# more go to their own items, so that reading the pages of a broadcast stays cheap.
INLINE_PLANNED_BYTES = 1000
NO_STATUS = "-"  # tally_from of a delivery claimed for the first time


class DynamoStatusStore:
    def __init__(self, dynamodb: Any, table: str, retention_days: int):
        self._dynamodb = dynamodb
        self._table = table
        self._retention = timedelta(days=retention_days)

    def expires_at(self) -> int:
        return int((now() + self._retention).timestamp())

    def record_accepted(self, notification: Notification) -> None:
        item = {
            "notification_id": {"S": notification.notification_id},
            "sk": {"S": SUMMARY_SK},
            "request": {"S": request_of(notification)},
            "accepted_at": {"S": notification.accepted_at.isoformat()},
            "expires_at": {"N": str(self.expires_at())},
        }
        item.update(scheduling_attributes(notification, self._retention))
        self._dynamodb.put_item(TableName=self._table, Item=item)

    def cancel(self, notification_id: str) -> Cancellation:
        """Cancelled unless fan-out recorded its first page: the cancel marks that page's item, whose record
        requires no cancel and comes before anything of the notification is published, so exactly one of the
        two wins, and a cancel that wins leaves nothing to send."""
        summary = self._dynamodb.get_item(
            TableName=self._table, Key=_key(notification_id, SUMMARY_SK), ConsistentRead=True
        ).get("Item")
        if not summary:
            return Cancellation.UNKNOWN
        first = first_page(summary.get("request", {}).get("S", ""))
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_key(notification_id, PAGE_PREFIX + first),
                # The summary's expiry, counted from a schedule's send_at: the mark lasts as long as the request.
                UpdateExpression="SET cancelled_at = :t, expires_at = :e",
                ConditionExpression="attribute_not_exists(cancelled_at) AND attribute_not_exists(done_at)",
                ExpressionAttributeValues={
                    ":t": {"S": now().isoformat()},
                    ":e": summary.get("expires_at") or {"N": str(self.expires_at())},
                },
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return cancellation_refused(error.response.get("Item") or self._page(notification_id, first))
        return Cancellation.CANCELLED

    def _page(self, notification_id: str, page: str) -> dict[str, Any]:
        """Where ReturnValuesOnConditionCheckFailure is not honoured (older emulators): read the item."""
        response = self._dynamodb.get_item(
            TableName=self._table, Key=_key(notification_id, PAGE_PREFIX + page), ConsistentRead=True
        )
        item: dict[str, Any] = response.get("Item") or {}
        return item

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
        # Every attribute by placeholder: several of these names (request, next) are DynamoDB reserved words.
        names = {f"#{assignment.split(' = ')[0]}": assignment.split(" = ")[0] for assignment in sets}
        sets = [f"#{assignment}" for assignment in sets]
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_key(notification_id, PAGE_PREFIX + page),
                UpdateExpression="SET " + ", ".join(sets),
                ConditionExpression="attribute_not_exists(done_at) AND attribute_not_exists(cancelled_at)",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=values,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            # The item that refused the write: it exists (it has `done_at` or `cancelled_at`), so DynamoDB returns it.
            old = error.response.get("Item") or {}
            if not old:
                raise
            if "cancelled_at" in old:
                return PageWrite(written=False, cancelled=True)
            return PageWrite(
                written=False, next=_position(old) if "next" in old else None, continued="continued_at" in old
            )
        return PageWrite(written=True)

    def record_continued(self, notification_id: str, page: str) -> None:
        self._dynamodb.update_item(
            TableName=self._table,
            Key=_key(notification_id, PAGE_PREFIX + page),
            UpdateExpression="SET continued_at = :t",
            ExpressionAttributeValues={":t": {"S": now().isoformat()}},
        )

    # --- deliveries --------------------------------------------------------------------------------

    def claim_delivery(
        self,
        job: DeliveryJob,
        owner: str,
        until: datetime,
        parked_at: datetime | None = None,
        invocation: str | None = None,
    ) -> Claim:
        """The one write before a provider call: claims the delivery and counts the attempt.

        Granted when the delivery is new, queued, retrying, or held by a claim that expired (its
        invocation died); and when it is dead-lettered, only to a message Herald parked (see
        `_revival`). Refused when it is sent or failed, or another invocation holds a live claim:
        an SQS duplicate never reaches the provider.
        With `invocation`, the claim also marks the delivery with it (herald.logic.tallies).
        """
        at = now()
        revival, revival_values = _revival(parked_at)
        update = (
            "SET #status = :sending, claim_owner = :o, claimed_until = :until, user_id = :u, device_id = :d,"
            " channel = :c, updated_at = :t, expires_at = :e, queued_at = if_not_exists(queued_at, :q)"
        )
        values: dict[str, Any] = {
            ":sending": {"S": DeliveryState.SENDING.value},
            ":o": {"S": owner},
            ":until": {"N": str(_millis(until))},
            ":u": {"S": job.user_id},
            ":d": {"S": job.device_id},
            ":c": {"S": job.channel.value},
            ":t": {"S": at.isoformat()},
            ":q": {"S": (job.queued_at or job.accepted_at).isoformat()},
            ":e": {"N": str(self.expires_at())},
            ":one": {"N": "1"},
            **claimable_values(at),
            **revival_values,
        }
        if invocation is not None:
            update += ", tally_by = :inv, tally_until = :until, tally_from = if_not_exists(#status, :none)"
            values.update({":inv": {"S": invocation}, ":none": {"S": NO_STATUS}})
        old, granted = self._conditional_update(
            key=_key(partition_of(job.notification_id, job.page), DELIVERY_PREFIX + job.delivery_id),
            update=update + " ADD attempts :one, round_attempts :one",
            condition=CLAIMABLE + revival,
            values=values,
        )
        previous = _state(old.get("status", {}).get("S"))
        unsettled = _unsettled(old, invocation, at) if invocation is not None else None
        if not granted:
            # Refused while sent, failed or dead-lettered: finished, as far as this message goes.
            if previous in FINISHED_FOR_A_COPY:
                return Claim(
                    granted=False,
                    done=True,
                    dead_lettered=previous is DeliveryState.DEAD_LETTERED,
                    previous=previous,
                    unsettled=unsettled,
                )
            return Claim(granted=False, busy_until=_until(old, "claimed_until"), previous=previous, unsettled=unsettled)
        return Claim(
            granted=True,
            attempt=int(old.get("round_attempts", {}).get("N", "0")) + 1,
            taken_over="claimed_until" in old,
            redriven=previous is DeliveryState.DEAD_LETTERED,
            previous=previous,
            unsettled=unsettled,
        )

    def record_outcome(
        self,
        job: DeliveryJob,
        owner: str,
        state: DeliveryState,
        error: str | None = None,
        provider_message_id: str | None = None,
        redriven: bool = False,
    ) -> bool:
        """Records how the claimed attempt ended and releases the claim. False if the claim was
        lost (it expired and another invocation took it over): that one's outcome stands."""
        at = now().isoformat()
        sets = ["#status = :s", "updated_at = :t"]
        removes = ["claim_owner", "claimed_until"]
        values: dict[str, Any] = {":s": {"S": state.value}, ":t": {"S": at}, ":o": {"S": owner}}
        adds = []
        if error is not None:
            sets.append("last_error = :err")
            values[":err"] = {"S": error[:1000]}
        if state is DeliveryState.SENT:
            sets.append("sent_at = :t")
            removes.append("last_error")  # what failed before does not describe a delivery that was sent
            if provider_message_id:
                sets.append("provider_message_id = :m")
                values[":m"] = {"S": provider_message_id}
        if state is DeliveryState.DEAD_LETTERED:
            sets.append("round_attempts = :zero")  # a redrive starts a fresh round of attempts
            values[":zero"] = {"N": "0"}
            # Before the message is parked: its herald-dead-lettered-at is never earlier than this.
            sets.append("dead_lettered_at = :dead_at")
            values[":dead_at"] = {"N": str(_millis(now()))}
        if redriven:
            sets.append("redriven_at = :t")
            adds.append("redrives :one")
            values[":one"] = {"N": "1"}
        expression = "SET " + ", ".join(sets) + " REMOVE " + ", ".join(removes)
        if adds:
            expression += " ADD " + ", ".join(adds)
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key=_key(partition_of(job.notification_id, job.page), DELIVERY_PREFIX + job.delivery_id),
                UpdateExpression=expression,
                ConditionExpression="claim_owner = :o",
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
            )
        except ClientError as failure:
            if _code(failure) == "ConditionalCheckFailedException":
                return False
            raise
        return True

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

    def _conditional_update(
        self, key: dict[str, Any], update: str, condition: str, values: dict[str, Any]
    ) -> tuple[dict[str, Any], bool]:
        """The item before the update and whether the update happened."""
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeNames={"#status": "status"},
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return error.response.get("Item") or {}, False
        return response.get("Attributes") or {}, True


# When a delivery may be claimed: one condition, kept here, that every claim uses, followed by
# _revival's clause for a dead-lettered delivery.
CLAIMABLE = (
    "attribute_not_exists(#status) OR #status IN (:queued, :retrying) OR (#status = :sending AND claimed_until < :now)"
)


def claimable_values(at: datetime) -> dict[str, Any]:
    return {
        ":queued": {"S": DeliveryState.QUEUED.value},
        ":retrying": {"S": DeliveryState.RETRYING.value},
        ":now": {"N": str(_millis(at))},
    }


# What a claim refused by its condition finds: done, for the message asking (see _revival for dead letters).
FINISHED_FOR_A_COPY = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.DEAD_LETTERED)


def _revival(parked_at: datetime | None) -> tuple[str, dict[str, Any]]:
    """The claim's clause for a dead-lettered delivery: only an operator's redrive revives it.

    A message Herald parked in a DLQ carries `herald-dead-lettered-at`, and a redrive (receive,
    send, delete, or SQS's move task) keeps it; a stray SQS copy of the original job does not, so
    it finds the delivery done and never sends it nor counts a redrive. A parked copy older than
    the delivery's last dead-lettering (a copy of an earlier round) is refused the same way.
    """
    if parked_at is None:
        return "", {}
    clause = " OR (#status = :dead AND (attribute_not_exists(dead_lettered_at) OR dead_lettered_at <= :parked))"
    return clause, {":dead": {"S": DeliveryState.DEAD_LETTERED.value}, ":parked": {"N": str(_millis(parked_at))}}


def request_of(notification: Notification, recipients: bool = True) -> str:
    """What the status shows of the request: its priority, audience and channels."""
    fields = {"priority", "topic", "channels"} | ({"recipients"} if recipients else set())
    return notification.model_dump_json(include=fields, exclude_none=True)


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


def tally_key(page: str, invocation: str) -> str:
    return f"{TALLY_PREFIX}{page}#{invocation}"


def _unsettled(old: dict[str, Any], invocation: str, at: datetime) -> Transition | None:
    """The last tallied change another invocation made, once that invocation is surely over."""
    by = old.get("tally_by", {}).get("S")
    until = old.get("tally_until", {}).get("N")
    if not by or by == invocation or until is None or int(until) >= _millis(at):
        return None
    return Transition(
        by=by,
        until=_from_millis(int(until)),
        from_state=_state(old.get("tally_from", {}).get("S")),
        to_state=_state(old.get("status", {}).get("S")),
    )


def _state(value: str | None) -> DeliveryState | None:
    try:
        return DeliveryState(value) if value else None
    except ValueError:
        return None


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
