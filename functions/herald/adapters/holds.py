"""The schedule queue: SQS messages delayed up to 15 minutes a hop (herald.logic.holds)."""

from __future__ import annotations

from typing import Any

from herald.models.holds import HeldMessage

KIND_ATTRIBUTE = "held"


class ScheduleQueue:
    def __init__(self, sqs: Any, url: str):
        self._sqs = sqs
        self._url = url

    def hold(self, held: HeldMessage, delay_seconds: int) -> None:
        self._sqs.send_message(
            QueueUrl=self._url,
            MessageBody=held.model_dump_json(),
            DelaySeconds=delay_seconds,
            MessageAttributes={KIND_ATTRIBUTE: {"DataType": "String", "StringValue": held.held.kind}},
        )
