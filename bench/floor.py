"""The floor: the fewest AWS calls Herald's architecture allows per notification, line by line.

A notification to R recipients with D devices each makes n = R x D deliveries. Per notification:

  api       1 intake SendMessage, 1 status PutItem (accepted)
  fanout    R device Query pages (one page per recipient), ceil(n / 10) SNS PublishBatch, 2 status
            UpdateItem (the fan-out's claim; then "fanned out", which also records the planned
            deliveries, so no delivery needs an item of its own before it is claimed), ceil(R / 100)
            preferences BatchGetItem and ceil(R / 25) history BatchWriteItem (docs/preferences.md,
            docs/inbox.md)
  deliver   per delivery: 1 provider call, 2 status UpdateItem (the claim, then the outcome)
  mapping   what Lambda's event source mapping does on each queue: ReceiveMessage and
            DeleteMessageBatch, each carrying up to min(batch size, 10) messages; amortised over
            the notifications that share a batch (intake: 1 message per notification; the
            priority queue: n messages)

The status store's two writes per delivery are the reliability design's (claim before the provider
call, outcome after): one conditional write serves as both the claim and the attempt count.
A budget compares measured calls with this floor: at most 1.25x.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# SQS hands out and deletes at most 10 messages per call, whatever the mapping's batch size.
SQS_MESSAGES_PER_CALL = 10
PUBLISH_BATCH_ENTRIES = 10
STATUS_WRITES_PER_DELIVERY = 2

API_INTAKE_SEND = "api: intake SendMessage"
API_STATUS_ACCEPTED = "api: status PutItem (accepted)"
FANOUT_DEVICE_QUERY = "fanout: devices Query"
FANOUT_PUBLISH = "fanout: SNS PublishBatch"
FANOUT_STATUS = "fanout: status UpdateItem (claim, fanned out)"
FANOUT_STATUS_WRITES = 2
FANOUT_PREFERENCES = "fanout: preferences BatchGetItem"
FANOUT_HISTORY = "fanout: history BatchWriteItem"
PREFERENCES_PER_READ = 100  # BatchGetItem's keys
HISTORY_PER_WRITE = 25  # BatchWriteItem's items
DELIVER_PROVIDER = "deliver: provider call"
DELIVER_STATUS = "deliver: status writes"
INTAKE_RECEIVE = "mapping: intake ReceiveMessage"
INTAKE_DELETE = "mapping: intake DeleteMessageBatch"
PRIORITY_RECEIVE = "mapping: priority ReceiveMessage"
PRIORITY_DELETE = "mapping: priority DeleteMessageBatch"
OTHER = "other"

LINES = (
    API_INTAKE_SEND,
    API_STATUS_ACCEPTED,
    FANOUT_DEVICE_QUERY,
    FANOUT_PUBLISH,
    FANOUT_STATUS,
    FANOUT_PREFERENCES,
    FANOUT_HISTORY,
    DELIVER_PROVIDER,
    DELIVER_STATUS,
    INTAKE_RECEIVE,
    INTAKE_DELETE,
    PRIORITY_RECEIVE,
    PRIORITY_DELETE,
)


@dataclass(frozen=True)
class Shape:
    """One notification: to `recipients` users with `devices` devices each."""

    recipients: int
    devices: int

    @property
    def deliveries(self) -> int:
        return self.recipients * self.devices


@dataclass(frozen=True)
class Batching:
    """The event source mappings' batch sizes, from template.yaml."""

    intake: int
    priority: int


def floor_per_notification(shape: Shape, batching: Batching) -> dict[str, float]:
    """The fewest calls per notification, by line (see the module's docstring)."""
    n = shape.deliveries
    intake_per_call = min(batching.intake, SQS_MESSAGES_PER_CALL)
    priority_per_call = min(batching.priority, SQS_MESSAGES_PER_CALL)
    return {
        API_INTAKE_SEND: 1,
        API_STATUS_ACCEPTED: 1,
        FANOUT_DEVICE_QUERY: shape.recipients,
        FANOUT_PUBLISH: math.ceil(n / PUBLISH_BATCH_ENTRIES),
        FANOUT_STATUS: FANOUT_STATUS_WRITES,
        FANOUT_PREFERENCES: math.ceil(shape.recipients / PREFERENCES_PER_READ),
        FANOUT_HISTORY: math.ceil(shape.recipients / HISTORY_PER_WRITE),
        DELIVER_PROVIDER: n,
        DELIVER_STATUS: STATUS_WRITES_PER_DELIVERY * n,
        INTAKE_RECEIVE: 1 / intake_per_call,
        INTAKE_DELETE: 1 / intake_per_call,
        PRIORITY_RECEIVE: n / priority_per_call,
        PRIORITY_DELETE: n / priority_per_call,
    }


def floor_total(shape: Shape, batching: Batching) -> float:
    return sum(floor_per_notification(shape, batching).values())


PROVIDER_CALLS = {("sns", "Publish"), ("ses", "SendEmail"), ("ses", "SendRawEmail")}


def line_of(origin: str, function: str, service: str, operation: str, role: str) -> str:
    """Which line of the floor a counted call belongs to; OTHER when it has none (a retry's
    ChangeMessageVisibility, a read the floor does not need...)."""
    if origin == "poller" and service == "sqs":
        queue = "intake" if role == "IntakeQueue" else "priority"
        if operation == "ReceiveMessage":
            return INTAKE_RECEIVE if queue == "intake" else PRIORITY_RECEIVE
        if operation == "DeleteMessageBatch":
            return INTAKE_DELETE if queue == "intake" else PRIORITY_DELETE
        return OTHER
    if origin != "herald":
        return OTHER
    call = (function, service, operation, role)
    lines = {
        ("api", "sqs", "SendMessage", "IntakeQueue"): API_INTAKE_SEND,
        ("api", "dynamodb", "PutItem", "StatusTable"): API_STATUS_ACCEPTED,
        ("fanout", "dynamodb", "Query", "DevicesTable"): FANOUT_DEVICE_QUERY,
        ("fanout", "sns", "PublishBatch", "NotificationsTopic"): FANOUT_PUBLISH,
        ("fanout", "dynamodb", "UpdateItem", "StatusTable"): FANOUT_STATUS,
        ("fanout", "dynamodb", "BatchGetItem", "PreferencesTable"): FANOUT_PREFERENCES,
        ("fanout", "dynamodb", "BatchWriteItem", "HistoryTable"): FANOUT_HISTORY,
    }
    if call in lines:
        return lines[call]
    if function == "deliver":
        if (service, operation) in PROVIDER_CALLS or (service, operation, role) == (
            "dynamodb",
            "PutItem",
            "InboxTable",
        ):
            return DELIVER_PROVIDER
        if service == "dynamodb" and role == "StatusTable" and operation in {"UpdateItem", "PutItem"}:
            return DELIVER_STATUS
    return OTHER
