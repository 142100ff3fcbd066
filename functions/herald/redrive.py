"""Redrive: moves dead-lettered messages back to the queue they came from."""

from __future__ import annotations

from typing import Any

from herald.batches import send_in_batches

_ATTRIBUTE_FIELDS = ("DataType", "StringValue", "BinaryValue")


def redrive(sqs: Any, dlq_url: str, source_url: str, limit: int | None = None) -> int:
    """Receive, send, delete, ten at a time, until the DLQ is empty or `limit` moved.

    A message is deleted from the DLQ only after its copy is in the source queue: a crash in
    between leaves a duplicate, never a loss.
    """
    moved = 0
    while limit is None or moved < limit:
        wanted = 10 if limit is None else min(10, limit - moved)
        messages = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=wanted,
            MessageAttributeNames=["All"],
            VisibilityTimeout=60,
            WaitTimeSeconds=1,
        ).get("Messages", [])
        if not messages:
            break
        entries = [
            {
                "Id": str(index),
                "MessageBody": message["Body"],
                "MessageAttributes": {
                    name: {key: value[key] for key in _ATTRIBUTE_FIELDS if key in value}
                    for name, value in message.get("MessageAttributes", {}).items()
                },
            }
            for index, message in enumerate(messages)
        ]
        send_in_batches(entries, lambda chunk: sqs.send_message_batch(QueueUrl=source_url, Entries=chunk))
        send_in_batches(
            [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
            lambda chunk: sqs.delete_message_batch(QueueUrl=dlq_url, Entries=chunk),
        )
        moved += len(messages)
    return moved
