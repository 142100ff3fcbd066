"""Herald's queues and topic: the intake queue, the priority topic, depths and backoff."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from herald.batches import send_in_batches
from herald.domain import DeliveryJob, Notification, Priority
from herald.settings import QueueUrls

PRIORITY_ATTRIBUTE = "priority"


class IntakeQueue:
    def __init__(self, sqs: Any, url: str):
        self._sqs = sqs
        self._url = url

    def send(self, notification: Notification) -> None:
        self._sqs.send_message(
            QueueUrl=self._url,
            MessageBody=notification.model_dump_json(),
            MessageAttributes={PRIORITY_ATTRIBUTE: {"DataType": "String", "StringValue": notification.priority.value}},
        )


class DeliveryTopic:
    """The SNS topic whose subscriptions route each delivery to its priority's queue."""

    def __init__(self, sns: Any, topic_arn: str):
        self._sns = sns
        self._topic_arn = topic_arn

    def publish(self, jobs: list[DeliveryJob]) -> int:
        entries = [
            {
                "Id": str(index),
                "Message": job.model_dump_json(),
                "MessageAttributes": {PRIORITY_ATTRIBUTE: {"DataType": "String", "StringValue": job.priority.value}},
            }
            for index, job in enumerate(jobs)
        ]
        return send_in_batches(
            entries,
            lambda chunk: self._sns.publish_batch(TopicArn=self._topic_arn, PublishBatchRequestEntries=chunk),
        )


class QueueDepth(BaseModel):
    visible: int
    in_flight: int
    dead_lettered: int


def queue_depths(sqs: Any, urls: QueueUrls) -> dict[Priority, QueueDepth]:
    """The seeds' DLQ stats: per priority, messages waiting, in flight and dead-lettered."""
    depths = {}
    for priority in Priority:
        queue = _attributes(sqs, urls.queue_url(priority))
        dlq = _attributes(sqs, urls.dlq_url(priority))
        depths[priority] = QueueDepth(
            visible=int(queue["ApproximateNumberOfMessages"]),
            in_flight=int(queue["ApproximateNumberOfMessagesNotVisible"]),
            dead_lettered=int(dlq["ApproximateNumberOfMessages"]) + int(dlq["ApproximateNumberOfMessagesNotVisible"]),
        )
    return depths


def _attributes(sqs: Any, url: str) -> dict[str, str]:
    response = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )
    attributes: dict[str, str] = response["Attributes"]
    return attributes
