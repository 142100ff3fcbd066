"""Herald's queues and topic: the intake queues (one per priority), the priority topic, depths."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from herald.adapters.batches import send_in_batches
from herald.adapters.dead_letters import DEAD_LETTERED_AT_ATTRIBUTE
from herald.models.domain import DeliveryJob, Notification, Priority, delivery_messages, now
from herald.models.queues import QueueDepth
from herald.settings import QueueUrls

PRIORITY_ATTRIBUTE = "priority"


class IntakeQueue:
    """One priority's intake queue: the API's notifications and fan-out's continuations of that priority."""

    def __init__(self, sqs: Any, url: str):
        self._sqs = sqs
        self._url = url

    def send(self, notification: Notification) -> None:
        self._sqs.send_message(QueueUrl=self._url, **_message(notification))

    def send_all(self, notifications: list[Notification]) -> None:
        entries = [{"Id": str(index), **_message(n)} for index, n in enumerate(notifications)]
        send_in_batches(entries, lambda chunk: self._sqs.send_message_batch(QueueUrl=self._url, Entries=chunk))


class IntakeLanes:
    """The intake queues by priority: a notification waits only behind notifications of its own priority."""

    def __init__(self, sqs: Any, urls: Mapping[Priority, str]):
        self._lanes = {priority: IntakeQueue(sqs, url) for priority, url in urls.items()}

    def send(self, notification: Notification) -> None:
        self._lanes[notification.priority].send(notification)

    def send_all(self, notifications: list[Notification]) -> None:
        for priority, lane in self._lanes.items():
            mine = [n for n in notifications if n.priority is priority]
            if mine:
                lane.send_all(mine)


def _message(notification: Notification) -> dict[str, Any]:
    return {
        "MessageBody": notification.model_dump_json(exclude_none=True),
        "MessageAttributes": {PRIORITY_ATTRIBUTE: {"DataType": "String", "StringValue": notification.priority.value}},
    }


class DeliveryTopic:
    """The SNS topic whose subscriptions route each delivery to its priority's queue."""

    def __init__(self, sns: Any, topic_arn: str, parallel: int = 1, max_bytes: int = 0):
        self._sns = sns
        self._topic_arn = topic_arn
        self._parallel = parallel  # PublishBatch calls in flight at once
        self._max_bytes = max_bytes or PUBLISH_BATCH_BYTES  # a call's messages and attributes together

    def publish(self, jobs: list[DeliveryJob]) -> int:
        """Publishes `jobs` as their queue messages (a recipient's devices of one channel in one message,
        herald.models.domain.delivery_messages), ten to a PublishBatch call and at most its 256 KB; returns how
        many jobs were published."""
        # A page's messages are serialised together to cut its calls by size: at most a page's worth (1,000
        # deliveries) is in memory, whatever the audience.
        entries = [
            {
                "Message": message.model_dump_json(exclude_none=True),
                "MessageAttributes": {
                    PRIORITY_ATTRIBUTE: {"DataType": "String", "StringValue": message.priority.value}
                },
            }
            for message in delivery_messages(jobs)
        ]
        send_in_batches(
            entries,
            lambda chunk: self._sns.publish_batch(
                TopicArn=self._topic_arn,
                PublishBatchRequestEntries=[{"Id": str(index), **entry} for index, entry in enumerate(chunk)],
            ),
            parallel=self._parallel,
            weigh=_entry_bytes,
            max_weight=self._max_bytes,
        )
        return len(jobs)


# SNS's limit on a PublishBatch call's messages and their attributes together.
PUBLISH_BATCH_BYTES = 256 * 1024


def _entry_bytes(entry: dict[str, Any]) -> int:
    """What an entry counts toward PUBLISH_BATCH_BYTES: its message and its attributes' names and values."""
    attributes = sum(
        len(name.encode()) + len(value["DataType"].encode()) + len(value["StringValue"].encode())
        for name, value in entry["MessageAttributes"].items()
    )
    return len(entry["Message"].encode()) + attributes


DLQ_SAMPLE = 10  # ReceiveMessage's maximum: one call per DLQ


def queue_depths(sqs: Any, urls: QueueUrls) -> dict[Priority, QueueDepth]:
    """Per priority: messages waiting, in flight and dead-lettered, and the age of the oldest dead letter."""
    return {priority: queue_depth(sqs, urls.queue_url(priority), urls.dlq_url(priority)) for priority in Priority}


def intake_depths(sqs: Any, urls: QueueUrls) -> dict[Priority, QueueDepth]:
    """The same for each priority's intake queue."""
    return {
        priority: queue_depth(sqs, urls.intake_queue_url(priority), urls.intake_dlq_url(priority))
        for priority in Priority
    }


def schedule_depth(sqs: Any, urls: QueueUrls) -> QueueDepth | None:
    """The schedule queue's, with the messages waiting out their delay (what it holds); None without one."""
    if not urls.schedule_queue_url or not urls.schedule_dlq_url:
        return None
    return queue_depth(sqs, urls.schedule_queue_url, urls.schedule_dlq_url, delayed=True)


def feedback_depth(sqs: Any, urls: QueueUrls) -> QueueDepth | None:
    """The feedback queue's (SES bounces and complaints, for the feedback function); None without one."""
    if not urls.feedback_queue_url or not urls.feedback_dlq_url:
        return None
    return queue_depth(sqs, urls.feedback_queue_url, urls.feedback_dlq_url)


def queue_depth(sqs: Any, queue_url: str, dlq_url: str, delayed: bool = False) -> QueueDepth:
    queue = _attributes(sqs, queue_url, delayed)
    dlq = _attributes(sqs, dlq_url)
    waiting = int(dlq["ApproximateNumberOfMessages"])
    return QueueDepth(
        visible=int(queue["ApproximateNumberOfMessages"]),
        in_flight=int(queue["ApproximateNumberOfMessagesNotVisible"]),
        delayed=int(queue.get("ApproximateNumberOfMessagesDelayed", 0)) if delayed else None,
        dead_lettered=waiting + int(dlq["ApproximateNumberOfMessagesNotVisible"]),
        oldest_dead_letter_age_seconds=_oldest_age(sqs, dlq_url, now()) if waiting else None,
    )


def _attributes(sqs: Any, url: str, delayed: bool = False) -> dict[str, str]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    response = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=[*names, "ApproximateNumberOfMessagesDelayed"] if delayed else names
    )
    attributes: dict[str, str] = response["Attributes"]
    return attributes


def _oldest_age(sqs: Any, dlq_url: str, at: datetime) -> int | None:
    """SQS has no age of the oldest message (CloudWatch does, emulators do not): peek at a sample.

    VisibilityTimeout=0 leaves the messages visible. A dead letter Herald sent carries the time it
    was dead-lettered; one moved by the redrive policy has only SentTimestamp, which on a standard
    queue is still its original enqueue time, so its age reads a little high.
    """
    messages = sqs.receive_message(
        QueueUrl=dlq_url,
        MaxNumberOfMessages=DLQ_SAMPLE,
        VisibilityTimeout=0,
        WaitTimeSeconds=1,  # long polling asks every SQS server; it returns at once as messages are visible
        MessageSystemAttributeNames=["SentTimestamp"],
        MessageAttributeNames=[DEAD_LETTERED_AT_ATTRIBUTE],
    ).get("Messages", [])
    times = [_dead_lettered_at(message) for message in messages]
    if not times:
        return None
    return max(0, int((at - min(times)).total_seconds()))


def _dead_lettered_at(message: dict[str, Any]) -> datetime:
    attribute = message.get("MessageAttributes", {}).get(DEAD_LETTERED_AT_ATTRIBUTE, {})
    try:
        return datetime.fromisoformat(attribute["StringValue"])
    except (KeyError, ValueError):
        return datetime.fromtimestamp(int(message["Attributes"]["SentTimestamp"]) / 1000, tz=UTC)
