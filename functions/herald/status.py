"""The status store: a notification's summary and one item per delivery, in one partition."""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta
from typing import Any, Protocol

from pydantic import BaseModel

from herald.batches import send_in_batches
from herald.domain import (
    TERMINAL_DELIVERY_STATES,
    Channel,
    DeliveryJob,
    DeliveryState,
    Notification,
    NotificationState,
    Priority,
    now,
)

SUMMARY_SK = "notification"
DELIVERY_PREFIX = "delivery#"


class DeliveryRecord(BaseModel):
    user_id: str
    device_id: str
    channel: Channel
    status: DeliveryState
    attempts: int = 0
    last_error: str | None = None
    provider_message_id: str | None = None
    queued_at: datetime | None = None
    updated_at: datetime | None = None
    sent_at: datetime | None = None


class NotificationRecord(BaseModel):
    notification_id: str
    status: NotificationState
    priority: Priority
    recipients: list[str]
    channels: list[Channel] | None = None
    accepted_at: datetime
    fanned_out_at: datetime | None = None
    recipients_without_devices: list[str] = []
    counts: dict[str, int] = {}
    deliveries: list[DeliveryRecord] = []


class StatusStore(Protocol):
    def record_accepted(self, notification: Notification) -> None: ...
    def record_queued(self, jobs: list[DeliveryJob]) -> None: ...
    def record_fanned_out(self, notification_id: str, delivery_count: int, without_devices: list[str]) -> None: ...
    def record_attempt(
        self,
        job: DeliveryJob,
        state: DeliveryState,
        error: str | None = None,
        provider_message_id: str | None = None,
    ) -> None: ...
    def get(self, notification_id: str) -> NotificationRecord | None: ...


def overall_state(fanned_out: bool, deliveries: list[DeliveryRecord]) -> NotificationState:
    """A notification's status follows from its deliveries; nothing keeps a counter."""
    if not fanned_out and not deliveries:
        return NotificationState.ACCEPTED
    if not deliveries:
        return NotificationState.NO_DEVICES
    states = [delivery.status for delivery in deliveries]
    if not fanned_out or any(state not in TERMINAL_DELIVERY_STATES for state in states):
        return NotificationState.IN_PROGRESS
    if all(state is DeliveryState.SENT for state in states):
        return NotificationState.DELIVERED
    if any(state is DeliveryState.SENT for state in states):
        return NotificationState.PARTIALLY_DELIVERED
    return NotificationState.FAILED


class DynamoStatusStore:
    def __init__(self, dynamodb: Any, table: str, retention_days: int):
        self._dynamodb = dynamodb
        self._table = table
        self._retention = timedelta(days=retention_days)

    def expires_at(self) -> int:
        return int((now() + self._retention).timestamp())

    def record_accepted(self, notification: Notification) -> None:
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "notification_id": {"S": notification.notification_id},
                "sk": {"S": SUMMARY_SK},
                "request": {"S": notification.model_dump_json(include={"priority", "recipients", "channels"})},
                "accepted_at": {"S": notification.accepted_at.isoformat()},
                "expires_at": {"N": str(self.expires_at())},
            },
        )

    def record_queued(self, jobs: list[DeliveryJob]) -> None:
        queued_at = now().isoformat()
        expires_at = str(self.expires_at())
        requests = [
            {
                "PutRequest": {
                    "Item": {
                        "notification_id": {"S": job.notification_id},
                        "sk": {"S": DELIVERY_PREFIX + job.delivery_id},
                        "user_id": {"S": job.user_id},
                        "device_id": {"S": job.device_id},
                        "channel": {"S": job.channel.value},
                        "status": {"S": DeliveryState.QUEUED.value},
                        "attempts": {"N": "0"},
                        "queued_at": {"S": queued_at},
                        "updated_at": {"S": queued_at},
                        "expires_at": {"N": expires_at},
                    }
                }
            }
            for job in jobs
        ]
        send_in_batches(requests, self._batch_write, size=25)

    def record_fanned_out(self, notification_id: str, delivery_count: int, without_devices: list[str]) -> None:
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"notification_id": {"S": notification_id}, "sk": {"S": SUMMARY_SK}},
            UpdateExpression="SET fanned_out_at = :t, without_devices = :w, delivery_count = :n",
            ExpressionAttributeValues={
                ":t": {"S": now().isoformat()},
                ":w": {"S": ",".join(without_devices)},
                ":n": {"N": str(delivery_count)},
            },
        )

    def _batch_write(self, requests: list[dict[str, Any]]) -> dict[str, Any]:
        pending = requests
        for _ in range(5):
            response = self._dynamodb.batch_write_item(RequestItems={self._table: pending})
            pending = response.get("UnprocessedItems", {}).get(self._table, [])
            if not pending:
                return {"Successful": requests}
        return {"Failed": [{"Id": r["PutRequest"]["Item"]["sk"]["S"], "Code": "Unprocessed"} for r in pending]}

    def record_attempt(
        self,
        job: DeliveryJob,
        state: DeliveryState,
        error: str | None = None,
        provider_message_id: str | None = None,
    ) -> None:
        at = now().isoformat()
        sets = [
            "#status = :s",
            "user_id = :u",
            "device_id = :d",
            "channel = :c",
            "updated_at = :t",
            "expires_at = :e",
        ]
        values: dict[str, Any] = {
            ":s": {"S": state.value},
            ":u": {"S": job.user_id},
            ":d": {"S": job.device_id},
            ":c": {"S": job.channel.value},
            ":t": {"S": at},
            ":e": {"N": str(self.expires_at())},
            ":one": {"N": "1"},
        }
        if error is not None:
            sets.append("last_error = :err")
            values[":err"] = {"S": error[:1000]}
        if state is DeliveryState.SENT:
            sets.append("sent_at = :t")
            if provider_message_id:
                sets.append("provider_message_id = :m")
                values[":m"] = {"S": provider_message_id}
        expression = "SET " + ", ".join(sets) + " ADD attempts :one"
        self._dynamodb.update_item(
            TableName=self._table,
            Key={"notification_id": {"S": job.notification_id}, "sk": {"S": DELIVERY_PREFIX + job.delivery_id}},
            UpdateExpression=expression,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )

    def get(self, notification_id: str) -> NotificationRecord | None:
        paginator = self._dynamodb.get_paginator("query")
        summary: dict[str, Any] | None = None
        deliveries: list[DeliveryRecord] = []
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
                else:
                    deliveries.append(DeliveryRecord.model_validate(plain))
        if summary is None:
            return None
        request = json.loads(summary["request"])
        fanned_out = "fanned_out_at" in summary
        return NotificationRecord(
            notification_id=notification_id,
            status=overall_state(fanned_out, deliveries),
            priority=request["priority"],
            recipients=request["recipients"],
            channels=request.get("channels"),
            accepted_at=summary["accepted_at"],
            fanned_out_at=summary.get("fanned_out_at"),
            recipients_without_devices=[u for u in summary.get("without_devices", "").split(",") if u],
            counts=dict(Counter(delivery.status.value for delivery in deliveries)),
            deliveries=deliveries,
        )


def _plain(value: dict[str, Any]) -> Any:
    if "S" in value:
        return value["S"]
    if "N" in value:
        return int(value["N"])
    return None
