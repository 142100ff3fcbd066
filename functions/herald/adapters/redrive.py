"""Redrive: moves dead-lettered messages back to their queue, with SQS's own message-move task where it exists.

Two paths, one result:
- the message-move task (StartMessageMoveTask): SQS moves the messages itself, at a rate, and
  reports progress in ListMessageMoveTasks. The destination is always explicit: Herald's
  consumers dead-letter messages themselves, so most carry no DeadLetterQueueSourceArn.
- receive, send, delete: where the endpoint has no move task (moto), or when a count limit is
  asked for (a move task cannot stop at a count). A message is deleted from the DLQ only once
  its copy is in the destination: a crash in between leaves a duplicate, never a loss.

Both keep a message's body and every attribute, Herald's dead-letter ones included, as SQS's
move task does: a message that fails again is dead-lettered with fresh ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from herald.adapters.batches import send_in_batches
from herald.adapters.dead_letters import reason_of
from herald.models.redrive import DeadLetterRoute, QueueRedrive, RedrivePath
from herald.observability import logger

MAX_RATE = 500  # messages per second, SQS's ceiling for a move task
SAMPLE_SIZE = 10
PEEK_VISIBILITY = 10  # seconds a dry run holds the messages it reads, before handing them back at once
ATTRIBUTE_FIELDS = ("DataType", "StringValue", "BinaryValue")
# What an endpoint without message-move tasks answers: moto's server (500), other emulators and older APIs.
UNSUPPORTED_CODES = frozenset(
    {
        "500",
        "501",
        "InternalFailure",
        "InternalError",
        "NotImplemented",
        "InvalidAction",
        "UnknownOperationException",
        "UnsupportedOperation",
        "AWS.SimpleQueueService.UnsupportedOperation",
    }
)
ACTIVE_TASK_STATES = frozenset({"RUNNING", "CANCELLING"})


def move_task_unsupported(error: BaseException) -> bool:
    """True when the endpoint does not implement message-move tasks (as opposed to refusing this one).

    moto in-process raises NotImplementedError; moto's server answers HTTP 500 with an HTML page.
    On AWS a 500 is rare and transient: falling back to receive, send, delete is still correct.
    """
    if isinstance(error, NotImplementedError):
        return True
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code in UNSUPPORTED_CODES or status in (500, 501)
    return False


def _copy(attributes: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: {k: value[k] for k in ATTRIBUTE_FIELDS if k in value} for name, value in attributes.items()}


class Redrive:
    """Redrives, inspects or stops the redrive of one DLQ at a time. Time is injectable for tests.

    Whether the endpoint has message-move tasks is asked once per container, with `probe` (a
    client that makes one attempt: an emulator without them answers 500, which the SDK would
    retry), and remembered: later queues and invocations go straight to the path that works.
    """

    def __init__(
        self,
        sqs: Any,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        poll_every: float = 0.5,
        probe: Any = None,
    ):
        self._sqs = sqs
        self._probe = probe if probe is not None else sqs
        self._clock = clock
        self._sleep = sleep
        self._poll_every = poll_every
        self._no_move_tasks: str | None = None  # why not, once the endpoint said so
        self._move_tasks_answered = False  # the endpoint ran a move-task call once: it has them

    def _asking(self) -> Any:
        """The client for a move-task call: the one-attempt probe until the endpoint has answered one."""
        return self._sqs if self._move_tasks_answered else self._probe

    def _unsupported(self, error: BaseException) -> str:
        self._no_move_tasks = f"this endpoint has no message-move task (asked once: {_describe(error)})"
        logger.info("message-move tasks unavailable: receive, send, delete from now on", reason=self._no_move_tasks)
        return self._no_move_tasks

    def move(
        self, route: DeadLetterRoute, deadline: float, limit: int | None = None, rate: int | None = None
    ) -> QueueRedrive:
        """Moves the DLQ's messages to the route's destination, waiting for progress until `deadline`."""
        source = self._attributes(route.dlq_url)
        waiting = _depth(source)
        if limit is not None:
            note = f"limit {limit}: a message-move task cannot stop at a count"
            return self._receive_send_delete(route, waiting, deadline, limit, rate, note)
        if self._no_move_tasks is not None:
            return self._receive_send_delete(route, waiting, deadline, None, rate, self._no_move_tasks)
        destination_arn = self._attributes(route.destination_url, depth=False)["QueueArn"]
        task: dict[str, Any] = {"SourceArn": source["QueueArn"], "DestinationArn": destination_arn}
        if rate is not None:
            task["MaxNumberOfMessagesPerSecond"] = rate
        sqs = self._asking()
        try:
            handle = sqs.start_message_move_task(**task)["TaskHandle"]
        except (ClientError, NotImplementedError) as error:
            if not move_task_unsupported(error):
                raise
            return self._receive_send_delete(route, waiting, deadline, None, rate, self._unsupported(error))
        self._move_tasks_answered = True
        logger.info("message-move task started", queue=route.name, task_handle=handle, waiting=waiting)
        latest = self._latest_task(source["QueueArn"])
        while latest.get("Status") in ACTIVE_TASK_STATES and self._clock() < deadline:
            self._sleep(self._poll_every)
            latest = self._latest_task(source["QueueArn"])
        status = latest.get("Status")
        return QueueRedrive(
            path=RedrivePath.MESSAGE_MOVE_TASK,
            waiting=waiting,
            moved=int(latest.get("ApproximateNumberOfMessagesMoved", 0)),
            task_handle=handle,
            task_status=status,
            failure_reason=latest.get("FailureReason"),
            note="still running when the wait ended: read ListMessageMoveTasks for the rest"
            if status in ACTIVE_TASK_STATES
            else None,
        )

    def inspect(self, route: DeadLetterRoute, sample: int = SAMPLE_SIZE) -> QueueRedrive:
        """A dry run: how many messages wait, and the reasons of a few, without moving any.

        The messages read are handed back at once (visibility 0), so a dry run delays nothing.
        """
        waiting = _depth(self._attributes(route.dlq_url))
        read: list[dict[str, Any]] = []
        while waiting and len(read) < sample:
            batch = self._sqs.receive_message(
                QueueUrl=route.dlq_url,
                MaxNumberOfMessages=min(10, sample - len(read)),
                MessageAttributeNames=["All"],
                VisibilityTimeout=PEEK_VISIBILITY,
                WaitTimeSeconds=0 if read else 1,
            ).get("Messages", [])
            if not batch:
                break
            read.extend(batch)
        send_in_batches(
            [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0} for i, m in enumerate(read)],
            lambda chunk: self._sqs.change_message_visibility_batch(QueueUrl=route.dlq_url, Entries=chunk),
        )
        return QueueRedrive(
            path=RedrivePath.DRY_RUN,
            waiting=waiting,
            reasons=[reason_of(m.get("MessageAttributes", {})) for m in read],
        )

    def cancel(self, route: DeadLetterRoute) -> QueueRedrive:
        """Stops the DLQ's running move task, if any; what it already moved stays moved."""
        source = self._attributes(route.dlq_url)
        if self._no_move_tasks is not None:
            return QueueRedrive(path=RedrivePath.CANCEL, waiting=_depth(source), note=self._no_move_tasks)
        try:
            latest = self._latest_task(source["QueueArn"], self._asking())
        except (ClientError, NotImplementedError) as error:
            if not move_task_unsupported(error):
                raise
            return QueueRedrive(path=RedrivePath.CANCEL, waiting=_depth(source), note=self._unsupported(error))
        self._move_tasks_answered = True
        handle = latest.get("TaskHandle")
        if latest.get("Status") != "RUNNING" or not handle:
            return QueueRedrive(
                path=RedrivePath.CANCEL, waiting=_depth(source), task_status=latest.get("Status"), note="none running"
            )
        moved = self._sqs.cancel_message_move_task(TaskHandle=handle)["ApproximateNumberOfMessagesMoved"]
        return QueueRedrive(
            path=RedrivePath.CANCEL,
            waiting=_depth(source),
            moved=int(moved),
            task_handle=handle,
            task_status="CANCELLING",
        )

    def _receive_send_delete(
        self, route: DeadLetterRoute, waiting: int, deadline: float, limit: int | None, rate: int | None, note: str
    ) -> QueueRedrive:
        started = self._clock()
        moved = 0
        while limit is None or moved < limit:
            if self._clock() >= deadline:
                note += f"; stopped at the time bound after {moved}"
                break
            wanted = 10 if limit is None else min(10, limit - moved)
            if rate is not None:
                wanted = min(wanted, rate)
            messages = self._sqs.receive_message(
                QueueUrl=route.dlq_url,
                MaxNumberOfMessages=wanted,
                MessageAttributeNames=["All"],
                VisibilityTimeout=60,
                # Long-poll until the DLQ's announced depth is moved, then one short look for stragglers.
                WaitTimeSeconds=1 if moved < waiting else 0,
            ).get("Messages", [])
            if not messages:
                break
            entries = [
                {"Id": str(i), "MessageBody": m["Body"], "MessageAttributes": _copy(m.get("MessageAttributes", {}))}
                for i, m in enumerate(messages)
            ]
            send_in_batches(
                entries, lambda chunk: self._sqs.send_message_batch(QueueUrl=route.destination_url, Entries=chunk)
            )
            send_in_batches(
                [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)],
                lambda chunk: self._sqs.delete_message_batch(QueueUrl=route.dlq_url, Entries=chunk),
            )
            moved += len(messages)
            if rate is not None:  # keep the average at or under `rate` per second
                ahead = started + moved / rate - self._clock()
                if ahead > 0:
                    self._sleep(ahead)
        logger.info("redrove by receive, send, delete", queue=route.name, moved=moved, reason=note)
        return QueueRedrive(path=RedrivePath.RECEIVE_SEND_DELETE, waiting=waiting, moved=moved, note=note)

    def _attributes(self, url: str, depth: bool = True) -> dict[str, str]:
        names = ["QueueArn"]
        if depth:
            names += ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        attributes: dict[str, str] = self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
        return attributes

    def _latest_task(self, source_arn: str, sqs: Any = None) -> dict[str, Any]:
        """The most recent move task of this DLQ (SQS lists the newest first; one runs at a time)."""
        sqs = sqs if sqs is not None else self._sqs
        results = sqs.list_message_move_tasks(SourceArn=source_arn, MaxResults=1).get("Results", [])
        return dict(results[0]) if results else {}


def _depth(attributes: Mapping[str, str]) -> int:
    return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
    )


def _describe(error: BaseException) -> str:
    if isinstance(error, ClientError):
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{error.operation_name} answered HTTP {status}, code {error.response.get('Error', {}).get('Code')}"
    return f"{type(error).__name__}: {str(error)[:200]}"
