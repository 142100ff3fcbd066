"""Dead letters: a message Herald gives up on goes to its queue's DLQ with the reason attached.

Herald sends these itself (a poison record, a delivery's last failed attempt) instead of
waiting for the queue's redrive policy, so every dead letter says why it is there. The
redrive policy stays as the backstop for a function that crashes on a message every time;
those arrive without Herald's attributes.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from herald.models.domain import now

REASON_ATTRIBUTE = "herald-reason"
SOURCE_ATTRIBUTE = "herald-source-queue"
DEAD_LETTERED_AT_ATTRIBUTE = "herald-dead-lettered-at"
RECEIVE_COUNT_ATTRIBUTE = "herald-receive-count"
HERALD_ATTRIBUTES = (REASON_ATTRIBUTE, SOURCE_ATTRIBUTE, DEAD_LETTERED_AT_ATTRIBUTE, RECEIVE_COUNT_ATTRIBUTE)
MAX_REASON = 1000
NO_REASON = "moved by the queue's redrive policy (no reason recorded)"

_ATTRIBUTE_FIELDS = ("DataType", "StringValue", "BinaryValue")


def _string(value: str) -> dict[str, str]:
    return {"DataType": "String", "StringValue": value}


def copied_attributes(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """A received message's attributes, in the shape SendMessage takes (Lambda's event uses camelCase)."""
    copied: dict[str, dict[str, Any]] = {}
    for name, value in attributes.items():
        if name in HERALD_ATTRIBUTES:
            continue
        data_type = value.get("DataType") or value.get("dataType")
        string = value.get("StringValue") or value.get("stringValue")
        binary = value.get("BinaryValue") or value.get("binaryValue")
        entry: dict[str, Any] = {"DataType": data_type}
        if string is not None:
            entry["StringValue"] = string
        if binary is not None:
            entry["BinaryValue"] = binary
        copied[name] = entry
    return copied


def reason_of(message_attributes: Mapping[str, Any]) -> str:
    """The reason a DLQ message carries, as read back by ReceiveMessage."""
    value = message_attributes.get(REASON_ATTRIBUTE) or {}
    return str(value.get("StringValue") or NO_REASON)


def parked_at(message_attributes: Mapping[str, Any]) -> datetime | None:
    """When Herald parked this message in a DLQ, if it ever did: a redriven message still says so.

    Reads a Lambda event record's attributes (camelCase) as well as ReceiveMessage's.
    """
    value = message_attributes.get(DEAD_LETTERED_AT_ATTRIBUTE) or {}
    text = value.get("stringValue") or value.get("StringValue")
    try:
        return datetime.fromisoformat(text) if text else None
    except ValueError:
        return None


class DeadLetterQueue:
    """One queue's DLQ, written to directly."""

    def __init__(self, sqs: Any, url: str, source: str):
        self._sqs = sqs
        self._url = url
        self._source = source  # the name of the queue whose DLQ this is

    def send(self, body: str, attributes: Mapping[str, Any], reason: str, receive_count: int) -> None:
        """Parks `body` with its original attributes plus Herald's reason, source and time."""
        self._sqs.send_message(
            QueueUrl=self._url,
            MessageBody=body or "(empty body)",
            MessageAttributes={
                **copied_attributes(attributes),
                REASON_ATTRIBUTE: _string(reason[:MAX_REASON] or "unknown"),
                SOURCE_ATTRIBUTE: _string(self._source),
                DEAD_LETTERED_AT_ATTRIBUTE: _string(now().isoformat()),
                RECEIVE_COUNT_ATTRIBUTE: {"DataType": "Number", "StringValue": str(receive_count)},
            },
        )
