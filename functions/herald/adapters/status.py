"""The status store in DynamoDB: a notification's summary and one item per delivery, in one partition."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from herald.adapters.status_choices import cancellation_refused, held_attributes, held_records, scheduling_attributes
from herald.models.domain import Channel, DeliveryJob, DeliveryState, Notification, now
from herald.models.status import (
    Cancellation,
    Claim,
    DeferredDelivery,
    DeliveryRecord,
    NotificationRecord,
    SkippedDelivery,
    overall_state,
)

SUMMARY_SK = "notification"
DELIVERY_PREFIX = "delivery#"
PLANNED_PREFIX = "planned#"
PLANNED_CHUNK_BYTES = 300_000  # of an item's 400 KB


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
            "request": {"S": notification.model_dump_json(include={"priority", "recipients", "channels"})},
            "accepted_at": {"S": notification.accepted_at.isoformat()},
            "expires_at": {"N": str(self.expires_at())},
        }
        item.update(scheduling_attributes(notification, self._retention))
        self._dynamodb.put_item(TableName=self._table, Item=item)

    def cancel(self, notification_id: str) -> Cancellation:
        """Cancelled unless fan-out ever claimed it: the same item as claim_fan_out, whose condition
        requires no cancel, so exactly one of the two wins. A claim that expired (its fan-out crashed)
        still refuses: that fan-out may have published some deliveries before it died."""
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
                UpdateExpression="SET cancelled_at = :t",
                ConditionExpression=(
                    "attribute_exists(sk) AND attribute_not_exists(fanned_out_at)"
                    " AND attribute_not_exists(cancelled_at) AND attribute_not_exists(fanout_until)"
                ),
                ExpressionAttributeValues={":t": {"S": now().isoformat()}},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            return cancellation_refused(error.response.get("Item") or self._summary(notification_id))
        return Cancellation.CANCELLED

    def _summary(self, notification_id: str) -> dict[str, Any]:
        """Where ReturnValuesOnConditionCheckFailure is not honoured (older emulators): read the item."""
        response = self._dynamodb.get_item(
            TableName=self._table,
            Key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
            ConsistentRead=True,
        )
        item: dict[str, Any] = response.get("Item") or {}
        return item

    def claim_fan_out(self, notification_id: str, owner: str, until: datetime) -> Claim:
        """One fan-out per notification at a time: a duplicate intake message waits or finds it done."""
        return self._claim(
            key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
            update="SET fanout_owner = :o, fanout_until = :until",
            condition=(
                "attribute_not_exists(fanned_out_at) AND attribute_not_exists(cancelled_at)"
                " AND (attribute_not_exists(fanout_until) OR fanout_until < :now)"
            ),
            values={":o": {"S": owner}, ":until": {"N": str(_millis(until))}, ":now": {"N": str(_millis(now()))}},
            names={},
            # A cancelled notification is done: its intake message is dropped, nothing is sent.
            is_done=lambda old: "fanned_out_at" in old or "cancelled_at" in old,
            until_attribute="fanout_until",
            was_dead=lambda old: False,
        )

    def record_fanned_out(
        self,
        notification_id: str,
        jobs: list[DeliveryJob],
        without_devices: list[str],
        inactive_skipped: list[str],
        skipped: list[SkippedDelivery] | None = None,
        deferred: list[DeferredDelivery] | None = None,
    ) -> None:
        """One write says both that fan-out is done and which deliveries it published.

        A delivery has no item of its own until its deliver function claims it; until then the
        planned list stands for it (status `queued`). A very long list spills into extra
        "planned#<n>" items, written first, so whoever sees `fanned_out_at` sees the whole list.
        """
        planned = [f"{job.delivery_id}#{job.channel.value}" for job in jobs]
        chunks = _chunked(planned, PLANNED_CHUNK_BYTES)
        for index, chunk in enumerate(chunks[1:], start=1):
            self._dynamodb.put_item(
                TableName=self._table,
                Item={
                    "notification_id": {"S": notification_id},
                    "sk": {"S": f"{PLANNED_PREFIX}{index}"},
                    "planned": {"S": ",".join(chunk)},
                    "expires_at": {"N": str(self.expires_at())},
                },
            )
        held = held_attributes(skipped or [], deferred or [])  # only for notifications that have some
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
            UpdateExpression=(
                "SET fanned_out_at = :t, without_devices = :w, inactive_skipped = :i, delivery_count = :n,"
                " planned = :p"
                + "".join(f", #{name} = :{name}" for name in held)
                + " REMOVE fanout_owner, fanout_until"
            ),
            ExpressionAttributeValues={
                ":t": {"S": now().isoformat()},
                ":w": {"S": ",".join(without_devices)},
                ":i": {"S": ",".join(inactive_skipped)},
                ":n": {"N": str(len(jobs) + len(deferred or []))},
                ":p": {"S": ",".join(chunks[0]) if chunks else ""},
                **{f":{name}": value for name, value in held.items()},
            },
            # "deferred" is one of DynamoDB's reserved words
            **({"ExpressionAttributeNames": {f"#{name}": name for name in held}} if held else {}),
        )

    def claim_delivery(self, job: DeliveryJob, owner: str, until: datetime) -> Claim:
        """The one write before a provider call: claims the delivery and counts the attempt.

        Granted when the delivery is new, queued, retrying or dead-lettered (then redriven), or
        held by a claim that expired (its invocation died). Refused when it is sent or failed, or
        another invocation holds a live claim: an SQS duplicate never reaches the provider.
        """
        return self._claim(
            key={"notification_id": {"S": job.notification_id}, "sk": {"S": DELIVERY_PREFIX + job.delivery_id}},
            update=(
                "SET #status = :sending, claim_owner = :o, claimed_until = :until, user_id = :u, device_id = :d,"
                " channel = :c, updated_at = :t, expires_at = :e ADD attempts :one, round_attempts :one"
            ),
            condition=(
                "attribute_not_exists(#status) OR #status IN (:queued, :retrying, :dead)"
                " OR (#status = :sending AND claimed_until < :now)"
            ),
            values={
                ":sending": {"S": DeliveryState.SENDING.value},
                ":queued": {"S": DeliveryState.QUEUED.value},
                ":retrying": {"S": DeliveryState.RETRYING.value},
                ":dead": {"S": DeliveryState.DEAD_LETTERED.value},
                ":o": {"S": owner},
                ":until": {"N": str(_millis(until))},
                ":now": {"N": str(_millis(now()))},
                ":u": {"S": job.user_id},
                ":d": {"S": job.device_id},
                ":c": {"S": job.channel.value},
                ":t": {"S": now().isoformat()},
                ":e": {"N": str(self.expires_at())},
                ":one": {"N": "1"},
            },
            names={"#status": "status"},
            is_done=lambda old: old.get("status", {}).get("S") in (DeliveryState.SENT, DeliveryState.FAILED),
            until_attribute="claimed_until",
            was_dead=lambda old: old.get("status", {}).get("S") == DeliveryState.DEAD_LETTERED,
        )

    def _claim(
        self,
        key: dict[str, Any],
        update: str,
        condition: str,
        values: dict[str, Any],
        names: dict[str, str],
        is_done: Callable[[dict[str, Any]], bool],
        until_attribute: str,
        was_dead: Callable[[dict[str, Any]], bool],
    ) -> Claim:
        extra = {"ExpressionAttributeNames": names} if names else {}
        try:
            response = self._dynamodb.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression=update,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                ReturnValues="ALL_OLD",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **extra,
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            old = error.response.get("Item") or {}
            if is_done(old):
                return Claim(granted=False, done=True)
            until = old.get(until_attribute, {}).get("N")
            return Claim(granted=False, busy_until=_from_millis(int(until)) if until else None)
        old = response.get("Attributes") or {}
        attempt = int(old.get("round_attempts", {}).get("N", "0")) + 1
        return Claim(granted=True, attempt=attempt, taken_over=until_attribute in old, redriven=was_dead(old))

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
        values: dict[str, Any] = {":s": {"S": state.value}, ":t": {"S": at}, ":o": {"S": owner}}
        adds = []
        if error is not None:
            sets.append("last_error = :err")
            values[":err"] = {"S": error[:1000]}
        if state is DeliveryState.SENT:
            sets.append("sent_at = :t")
            if provider_message_id:
                sets.append("provider_message_id = :m")
                values[":m"] = {"S": provider_message_id}
        if state is DeliveryState.DEAD_LETTERED:
            sets.append("round_attempts = :zero")  # a redrive starts a fresh round of attempts
            values[":zero"] = {"N": "0"}
        if redriven:
            sets.append("redriven_at = :t")
            adds.append("redrives :one")
            values[":one"] = {"N": "1"}
        expression = "SET " + ", ".join(sets) + " REMOVE claim_owner, claimed_until"
        if adds:
            expression += " ADD " + ", ".join(adds)
        try:
            self._dynamodb.update_item(
                TableName=self._table,
                Key={"notification_id": {"S": job.notification_id}, "sk": {"S": DELIVERY_PREFIX + job.delivery_id}},
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

    def get(self, notification_id: str) -> NotificationRecord | None:
        paginator = self._dynamodb.get_paginator("query")
        summary: dict[str, Any] | None = None
        deliveries: list[DeliveryRecord] = []
        planned: list[str] = []
        for page in paginator.paginate(
            TableName=self._table,
            KeyConditionExpression="notification_id = :n",
            ExpressionAttributeValues={":n": {"S": notification_id}},
            ConsistentRead=True,
        ):
            for item in page.get("Items", []):
                plain = {name: _plain(value) for name, value in item.items()}
                if plain["sk"] == SUMMARY_SK:
                    summary = plain
                    planned.extend(_entries(plain.get("planned")))
                elif plain["sk"].startswith(PLANNED_PREFIX):
                    planned.extend(_entries(plain.get("planned")))
                elif "status" in plain:
                    deliveries.append(DeliveryRecord.model_validate(plain))
                # else: an item caught half-written. moto applies an update's actions one by one
                # and a concurrent read can see the keys alone (DynamoDB writes are atomic); the
                # planned list still stands for that delivery.
        if summary is None:
            return None
        request = json.loads(summary["request"])
        fanned_out = "fanned_out_at" in summary
        claimed = {f"{d.user_id}#{d.device_id}" for d in deliveries}
        deliveries.extend(planned_records(planned, claimed, summary.get("fanned_out_at")))
        deliveries.extend(held_records(summary, claimed))
        send_at = summary.get("send_at")
        scheduled = send_at is not None and datetime.fromisoformat(send_at) > now()
        return NotificationRecord(
            notification_id=notification_id,
            status=overall_state(fanned_out, deliveries, scheduled=scheduled, cancelled="cancelled_at" in summary),
            category=summary.get("category"),
            template=summary.get("template"),
            send_at=send_at,
            cancelled_at=summary.get("cancelled_at"),
            priority=request["priority"],
            recipients=request["recipients"],
            channels=request.get("channels"),
            accepted_at=summary["accepted_at"],
            fanned_out_at=summary.get("fanned_out_at"),
            recipients_without_devices=_entries(summary.get("without_devices")),
            inactive_devices_skipped=_entries(summary.get("inactive_skipped")),
            counts=dict(Counter(delivery.status.value for delivery in deliveries)),
            deliveries=deliveries,
        )


def _plain(value: dict[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        return int(value["N"])
    return None


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _millis(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def _from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def _entries(joined: str | None) -> list[str]:
    return [entry for entry in (joined or "").split(",") if entry]


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


def planned_records(planned: list[str], claimed: set[str], at: Any) -> list[DeliveryRecord]:
    """Queued records for planned deliveries ("<user>#<device>#<channel>") no deliver function has claimed yet."""
    records = []
    for entry in planned:
        user_id, device_id, channel = entry.split("#")
        if f"{user_id}#{device_id}" not in claimed:
            records.append(
                DeliveryRecord(
                    user_id=user_id,
                    device_id=device_id,
                    channel=Channel(channel),
                    status=DeliveryState.QUEUED,
                    queued_at=at,
                    updated_at=at,
                )
            )
    return records
