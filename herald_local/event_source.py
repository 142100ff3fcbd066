"""Lambda's SQS event source mapping, in-process: poll, batch, invoke, delete only what succeeded."""

from __future__ import annotations

import hashlib
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from herald.adapters.batches import send_in_batches
from herald_local.faults import FaultInjector, duplicate_message
from herald_local.functions import LocalFunction
from herald_local.precedence import LanePrecedence, mark_lanes
from herald_local.template import EventSourceSpec

# An empty queue is long-polled, as Lambda's mapping does (it waits up to 20 s): the emulator holds the
# receive until a message arrives, instead of the poller asking again and again. Kept short so a
# stopping stack is not held up by its pollers.
LONG_POLL_SECONDS = 1
WINDOW_SLEEP_MAX = 0.2  # between the receives that fill a batching window


class QueuePoller:
    """One mapping: a receiver thread and at most `concurrency` batches in flight.

    As on AWS: the batch size and batching window come from the template; a handler that raises
    returns every message to the queue after its visibility timeout; with ReportBatchItemFailures
    only the listed messages return; the queue's redrive policy moves a message to its DLQ once
    it has been received maxReceiveCount times. A function whose process dies (FunctionCrashed)
    fails its whole batch like a handler that raises.

    With a fault injector, a fraction of received messages is sent again to the queue (same body,
    same attributes) before the batch is invoked: SQS's at-least-once delivery, made frequent.

    With a lane precedence (herald_local/precedence.py) and a rank, a batch of this lane counts as in
    flight from its receive to the deletion of its messages, and a lower lane gives way to it (a capped
    wait) before each receive, before it starts a batch and before it deletes one. The most urgent lane
    never waits.
    """

    def __init__(
        self,
        sqs: Any,
        spec: EventSourceSpec,
        queue_url: str,
        queue_arn: str,
        function: LocalFunction,
        concurrency: int,
        on_error: Any = None,
        faults: FaultInjector | None = None,
        precedence: LanePrecedence | None = None,
        rank: int | None = None,
    ):
        self._sqs = sqs
        self.spec = spec
        self._url = queue_url
        self._arn = queue_arn
        self._function = function
        self._slots = threading.Semaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix=spec.name)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poll-{spec.name}", daemon=True)
        self._on_error = on_error or (lambda message: None)
        self._faults = faults
        self._precedence = precedence or LanePrecedence(enabled=False)
        self.rank = rank
        mark_lanes(sqs)  # its receives and deletes name its lane to the emulator (LanePrecedence.calling_for)

    @property
    def queue_url(self) -> str:
        return self._url

    def start(self) -> None:
        self._thread.start()

    def stopping(self) -> None:
        """Asks the poller to stop, without waiting: a stack stops all its pollers at once."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=LONG_POLL_SECONDS + 5)
        self._pool.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._slots.acquire()
            try:
                batch = self._collect()
            except Exception as error:  # the endpoint went away or hiccuped: try again shortly
                self._slots.release()
                self._on_error(f"{self.spec.name}: receive failed: {error!r}")
                self._stop.wait(1.0)
                continue
            if not batch:
                self._slots.release()
                continue
            self._precedence.begin(self.rank)
            if self._faults is not None:
                self._duplicate(batch, self._faults)
            self._pool.submit(self._invoke_in_flight, batch)

    def _duplicate(self, batch: list[dict[str, Any]], faults: FaultInjector) -> None:
        for message in batch:
            if not faults.should_duplicate(self._url, message):
                continue
            try:
                self._sqs.send_message(**duplicate_message(self._url, message))
            except Exception as error:
                self._on_error(f"{self.spec.name}: could not inject a duplicate: {error!r}")
                continue
            faults.duplicated(self._url)

    def _receive(self, count: int, wait: int = 0) -> list[dict[str, Any]]:
        self._precedence.give_way(self.rank)  # a receive costs the emulator a scan of the queue
        self._precedence.calling_for(self.rank)
        response = self._sqs.receive_message(
            QueueUrl=self._url,
            MaxNumberOfMessages=min(count, 10),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=wait,
        )
        messages: list[dict[str, Any]] = response.get("Messages", [])
        return messages

    def _collect(self) -> list[dict[str, Any]]:
        batch = self._receive(self.spec.batch_size, wait=LONG_POLL_SECONDS)
        if not batch or self.spec.batching_window == 0:
            return batch
        deadline = time.monotonic() + self.spec.batching_window
        while len(batch) < self.spec.batch_size and time.monotonic() < deadline and not self._stop.is_set():
            more = self._receive(self.spec.batch_size - len(batch))
            if more:
                batch.extend(more)
            else:
                self._stop.wait(min(WINDOW_SLEEP_MAX, max(deadline - time.monotonic(), 0)))
        return batch

    def _invoke_in_flight(self, messages: list[dict[str, Any]]) -> None:
        """The batch, counted in flight for its lane since its receive (`_run`), until it is done."""
        try:
            self._invoke(messages)
        finally:
            self._precedence.end(self.rank)

    def _invoke(self, messages: list[dict[str, Any]]) -> None:
        """Invokes the function with the batch, deletes what succeeded, and releases the batch's slot."""
        try:
            self._precedence.give_way(self.rank)
            try:
                result = self._function.invoke(self._event(messages))
            except Exception as error:
                self._on_error(
                    f"{self._function.name} raised {error!r}: the batch returns after its visibility timeout"
                )
                return
            failed = self._failed_ids(result, messages)
            done = [m for m in messages if m["MessageId"] not in failed]
            send_in_batches(
                [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(done)],
                self._delete,
            )
        except Exception as error:
            self._on_error(f"{self.spec.name}: {error!r}")
        finally:
            self._slots.release()

    def _delete(self, entries: list[dict[str, str]]) -> dict[str, Any]:
        self._precedence.give_way(self.rank)
        self._precedence.calling_for(self.rank)
        answer: dict[str, Any] = self._sqs.delete_message_batch(QueueUrl=self._url, Entries=entries)
        return answer

    def _failed_ids(self, result: Any, messages: list[dict[str, Any]]) -> set[str]:
        if not self.spec.report_batch_item_failures or not isinstance(result, dict):
            return set()
        ids = {m["MessageId"] for m in messages}
        failed = set()
        for failure in result.get("batchItemFailures", []):
            identifier = failure.get("itemIdentifier") if isinstance(failure, dict) else None
            if not identifier or identifier not in ids:
                return ids  # Lambda treats a malformed response as a failure of the whole batch
            failed.add(identifier)
        return failed

    def _event(self, messages: list[dict[str, Any]]) -> dict[str, Any]:
        region = self._arn.split(":")[3]
        return {"Records": [_record(m, self._arn, region) for m in messages]}


def _record(message: dict[str, Any], arn: str, region: str) -> dict[str, Any]:
    attributes = message.get("Attributes", {})
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {
            key: attributes[key]
            for key in (
                "ApproximateReceiveCount",
                "SentTimestamp",
                "SenderId",
                "ApproximateFirstReceiveTimestamp",
                "DeadLetterQueueSourceArn",
            )
            if key in attributes
        },
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": value.get("BinaryValue"),
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody") or hashlib.md5(message["Body"].encode()).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": region,
    }
