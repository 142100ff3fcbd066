"""A queue's batch as Lambda hands it to a consumer: each record parsed and handled on its own.

- A record that cannot be parsed (a poison message) goes straight to the queue's DLQ with its
  reason and is done: it never fails its batch and never loops.
- A record whose handling says "retry" is reported as a batch item failure, its visibility set
  to the backoff it asked for (one ChangeMessageVisibilityBatch call for the batch).
- A record whose handling raised is sorted by `classify` (herald.logic.failures, wired by the
  handler): a permanent failure (a DynamoDB ValidationException, say) goes to the DLQ at once
  with its reason; anything else comes back until the last allowed receive, then goes there too.
- A record whose handling says "dead-letter" goes to the DLQ with its reason and is done.
- Records are handled concurrently when `parallel` > 1, at most `lane_limits[lane]` at once per
  lane (a channel, say), each in a copy of the invocation's context (its log keys). With
  `handle_group`, records that share a `group_of` key are handled together, as one unit holding
  a slot per record (of `parallel` and of the record's lane), cut at those limits. A crash (a
  BaseException, as when the runtime dies) propagates: the whole invocation fails and every
  record comes back, as on Lambda.
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from herald.adapters.batches import send_in_batches
from herald.adapters.dead_letters import DeadLetterQueue
from herald.models.failures import Failure
from herald.observability import logger

T = TypeVar("T")


@dataclass(frozen=True)
class QueueRecord:
    """One SQS record of a Lambda event."""

    message_id: str
    receipt_handle: str
    body: str
    message_attributes: Mapping[str, Any]
    receive_count: int

    @classmethod
    def from_event_record(cls, record: Mapping[str, Any]) -> QueueRecord:
        return cls(
            message_id=str(record.get("messageId", "")),
            receipt_handle=str(record.get("receiptHandle", "")),
            body=str(record.get("body", "")),
            message_attributes=record.get("messageAttributes") or {},
            receive_count=int((record.get("attributes") or {}).get("ApproximateReceiveCount", 1)),
        )


@dataclass(frozen=True)
class Done:
    """Handled for good: the message can be deleted."""


@dataclass(frozen=True)
class Retry:
    """Bring the message back after `delay` seconds (None: the queue's visibility timeout)."""

    reason: str
    delay: int | None = None


@dataclass(frozen=True)
class DeadLetter:
    reason: str


Verdict = Done | Retry | DeadLetter


@dataclass
class BatchOutcome:
    failed: list[str] = field(default_factory=list)  # message ids reported back to the queue
    parked: set[str] = field(default_factory=set)  # message ids sent to the DLQ
    dead_lettered: int = 0
    poison: int = 0

    def response(self) -> dict[str, Any]:
        return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in self.failed]}


@dataclass(frozen=True)
class Consumer(Generic[T]):
    """How one function reads its queue."""

    dead_letters: DeadLetterQueue
    sqs: Any
    queue_url: str
    max_receive_count: int
    classify: Callable[[Exception], Failure]  # permanent or transient: herald.logic.failures.failure_from
    parallel: int = 1
    lane_of: Callable[[T], str] | None = None
    lane_limits: Mapping[str, int] = field(default_factory=dict)
    # Told each handled record's verdict, whether `handle` returned it or raised (metrics).
    observe: Callable[[QueueRecord, T, Verdict], None] | None = None
    # Given every parsed record before any is handled: work the batch's records share (one publish for
    # several notifications). What it leaves undone, `handle` does for each record alone.
    prepare: Callable[[list[tuple[QueueRecord, T]]], None] | None = None
    # How an item is handled: `handle` each alone, or `handle_group` the items sharing a key of `group_of`
    # together, one verdict per item in order (a deliver batch's deliveries to one recipient: one status write
    # claims them all). Exactly one of the two is given.
    handle: Callable[[QueueRecord, T], Verdict] | None = None
    group_of: Callable[[T], Hashable] | None = None
    handle_group: Callable[[list[tuple[QueueRecord, T]]], list[Verdict]] | None = None
    # How a record's body is read: `parse` for one item, or `parse_all` for a record that holds several (a
    # recipient's deliveries in one message: each is handled as its own, and the record's verdict is the one that
    # leaves none of them behind, one_verdict). Exactly one of the two is given.
    parse: Callable[[str], T] | None = None
    parse_all: Callable[[str], list[T]] | None = None

    def __post_init__(self) -> None:
        if (self.parse is None) == (self.parse_all is None):
            raise TypeError("a Consumer reads its records with exactly one of parse and parse_all")
        if (self.handle is None) == (self.handle_group is None):
            raise TypeError("a Consumer handles its items with exactly one of handle and handle_group")

    def _items_of(self, body: str) -> list[T]:
        if self.parse_all is not None:
            return self.parse_all(body)
        assert self.parse is not None  # __post_init__
        return [self.parse(body)]

    def process(self, event: Mapping[str, Any]) -> BatchOutcome:
        records = [QueueRecord.from_event_record(record) for record in event.get("Records", [])]
        outcome = BatchOutcome()
        work: list[tuple[QueueRecord, T]] = []
        for record in records:
            try:
                work.extend((record, item) for item in self._items_of(record.body))
            except ValueError as error:  # pydantic's ValidationError is a ValueError
                outcome.poison += 1
                self._dead_letter(record, f"invalid message: {_invalid_because(error)}", outcome)
        if self.prepare is not None:
            self.prepare(work)
        verdicts = self._handle_units(work) if self.handle_group is not None else self._handle_all(work)
        delays: list[tuple[QueueRecord, int]] = []
        for record, verdict in per_record(verdicts):
            if isinstance(verdict, Retry):
                outcome.failed.append(record.message_id)
                if verdict.delay is not None:
                    delays.append((record, verdict.delay))
            elif isinstance(verdict, DeadLetter):
                self._dead_letter(record, verdict.reason, outcome)
        self._set_visibility(delays)
        return outcome

    def _handle_all(self, work: list[tuple[QueueRecord, T]]) -> list[tuple[QueueRecord, Verdict]]:
        if self.parallel <= 1 or len(work) <= 1:
            return [(record, self._handle_one(record, item)) for record, item in work]
        lanes = {lane: threading.BoundedSemaphore(limit) for lane, limit in self.lane_limits.items()}

        def run(record: QueueRecord, item: T) -> Verdict:
            lane = lanes.get(self.lane_of(item)) if self.lane_of else None
            if lane is None:
                return self._handle_one(record, item)
            with lane:
                return self._handle_one(record, item)

        with ThreadPoolExecutor(max_workers=min(self.parallel, len(work))) as pool:
            # A pool thread starts with an empty context: each record gets a copy of this one.
            futures = [
                (record, pool.submit(contextvars.copy_context().run, run, record, item)) for record, item in work
            ]
            return [(record, future.result()) for record, future in futures]

    def _handle_units(self, work: list[tuple[QueueRecord, T]]) -> list[tuple[QueueRecord, Verdict]]:
        units = self._units(work)
        if self.parallel <= 1 or len(units) <= 1:
            return [pair for unit in units for pair in self._handle_unit(unit)]
        slots = _Slots(self.parallel, self.lane_limits)

        def run(unit: list[tuple[QueueRecord, T]]) -> list[tuple[QueueRecord, Verdict]]:
            with slots.taken(self._lanes_of(unit)):
                return self._handle_unit(unit)

        with ThreadPoolExecutor(max_workers=min(self.parallel, len(units))) as pool:
            futures = [pool.submit(contextvars.copy_context().run, run, unit) for unit in units]
            return [pair for future in futures for pair in future.result()]

    def _units(self, work: list[tuple[QueueRecord, T]]) -> list[list[tuple[QueueRecord, T]]]:
        """The batch's records by group, in order of first appearance; a group is cut where a unit would hold
        more records than `parallel`, or than a lane's limit of that lane's records."""
        groups: dict[Hashable, list[tuple[QueueRecord, T]]] = {}
        for index, (record, item) in enumerate(work):
            key = self.group_of(item) if self.group_of is not None else index
            groups.setdefault(key, []).append((record, item))
        units: list[list[tuple[QueueRecord, T]]] = []
        for group in groups.values():
            unit: list[tuple[QueueRecord, T]] = []
            for pair in group:
                lanes = self._lanes_of([*unit, pair])
                if unit and (
                    len(unit) >= self.parallel or any(n > self.lane_limits.get(lane, n) for lane, n in lanes.items())
                ):
                    units.append(unit)
                    unit = []
                unit.append(pair)
            units.append(unit)
        return units

    def _lanes_of(self, unit: list[tuple[QueueRecord, T]]) -> Counter[str]:
        """How many of a unit's records each lane holds."""
        return Counter(self.lane_of(item) for _, item in unit) if self.lane_of else Counter()

    def _handle_unit(self, unit: list[tuple[QueueRecord, T]]) -> list[tuple[QueueRecord, Verdict]]:
        assert self.handle_group is not None
        try:
            verdicts = self.handle_group(unit)
        except Exception as error:
            verdicts = [self._failed(record, error) for record, _ in unit]
        pairs = [(record, verdict) for (record, _), verdict in zip(unit, verdicts, strict=True)]
        if self.observe is not None:
            for (record, item), verdict in zip(unit, verdicts, strict=True):
                self.observe(record, item, verdict)
        return pairs

    def _handle_one(self, record: QueueRecord, item: T) -> Verdict:
        verdict = self._verdict(record, item)
        if self.observe is not None:
            self.observe(record, item, verdict)
        return verdict

    def _verdict(self, record: QueueRecord, item: T) -> Verdict:
        assert self.handle is not None  # __post_init__
        try:
            return self.handle(record, item)
        except Exception as error:
            return self._failed(record, error)

    def _failed(self, record: QueueRecord, error: Exception) -> Verdict:
        """The verdict on a record whose handling raised."""
        failure = self.classify(error)
        reason = f"{type(error).__name__}: {_first_line(error)}"
        if failure.permanent:
            # No retry can fix it: waiting out the receives would only delay the dead letter.
            logger.warning("record failed permanently", message_id=record.message_id, reason=reason)
            return DeadLetter(f"failed permanently on receive {record.receive_count}: {reason}")
        if record.receive_count >= self.max_receive_count:
            # The queue would move it on the next receive, without a reason: say why instead.
            return DeadLetter(f"failed on receive {record.receive_count}: {reason}")
        logger.exception("record failed; the queue will bring it back", message_id=record.message_id)
        return Retry(reason)

    def _dead_letter(self, record: QueueRecord, reason: str, outcome: BatchOutcome) -> None:
        try:
            self.dead_letters.send(record.body, record.message_attributes, reason, record.receive_count)
        except Exception:
            logger.exception("could not dead-letter the record; the queue will bring it back", reason=reason)
            outcome.failed.append(record.message_id)
            return
        outcome.dead_lettered += 1
        outcome.parked.add(record.message_id)
        logger.warning("dead-lettered", message_id=record.message_id, reason=reason)

    def _set_visibility(self, delays: list[tuple[QueueRecord, int]]) -> None:
        entries = [
            {"Id": str(index), "ReceiptHandle": record.receipt_handle, "VisibilityTimeout": seconds}
            for index, (record, seconds) in enumerate(delays)
        ]
        if not entries:
            return
        try:
            send_in_batches(
                entries,
                lambda chunk: self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=chunk),
            )
        except Exception:  # BatchEntryFailed included
            # The messages still come back, after the queue's visibility timeout instead.
            logger.exception("could not set the backoff of some messages")


def per_record(verdicts: list[tuple[QueueRecord, Verdict]]) -> list[tuple[QueueRecord, Verdict]]:
    """One verdict per record, in order, from those of its items (one_verdict)."""
    records: dict[str, QueueRecord] = {}
    by_record: dict[str, list[Verdict]] = {}
    for record, verdict in verdicts:
        records.setdefault(record.message_id, record)
        by_record.setdefault(record.message_id, []).append(verdict)
    return [(records[message_id], one_verdict(found)) for message_id, found in by_record.items()]


def one_verdict(verdicts: list[Verdict]) -> Verdict:
    """A message's verdict from its items': back if any is to retry (the longest backoff any asked for, so none
    comes back early: the items already sent find their claims and are skipped), else to the DLQ if any is
    (with every reason), else done."""
    if len(verdicts) == 1:
        return verdicts[0]
    retries = [v for v in verdicts if isinstance(v, Retry)]
    if retries:
        delays = [r.delay for r in retries if r.delay is not None]
        reasons = list(dict.fromkeys(r.reason for r in retries))
        return Retry("; ".join(reasons), delay=max(delays) if delays else None)
    dead = [v for v in verdicts if isinstance(v, DeadLetter)]
    if dead:
        return DeadLetter("; ".join(dict.fromkeys(d.reason for d in dead)))
    return Done()


class _Slots:
    """Send slots of a batch: `parallel` in all and each lane's limit, taken several at a time by a unit."""

    def __init__(self, parallel: int, lane_limits: Mapping[str, int]):
        self._free = parallel
        self._lanes = dict(lane_limits)
        self._changed = threading.Condition()

    @contextmanager
    def taken(self, lanes: Counter[str]) -> Iterator[None]:
        """As many slots as the unit has records, of each lane as many as it has records of that lane."""
        count = max(sum(lanes.values()), 1)
        limited = {lane: n for lane, n in lanes.items() if lane in self._lanes}
        with self._changed:
            self._changed.wait_for(
                lambda: self._free >= count and all(self._lanes[lane] >= n for lane, n in limited.items())
            )
            self._free -= count
            for lane, n in limited.items():
                self._lanes[lane] -= n
        try:
            yield
        finally:
            with self._changed:
                self._free += count
                for lane, n in limited.items():
                    self._lanes[lane] += n
                self._changed.notify_all()


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:500] if text else type(error).__name__


def _invalid_because(error: ValueError) -> str:
    """What is wrong with a message, naming its fields: "title: Field required; priority: ..."."""
    errors = getattr(error, "errors", None)
    if not callable(errors):
        return _first_line(error)
    problems = [f"{'.'.join(str(part) for part in e['loc']) or 'body'}: {e['msg']}" for e in errors()[:5]]
    return "; ".join(problems)[:900]
