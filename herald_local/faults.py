"""Fault injection for the local stack: flaky providers, crashes after a send, duplicated queue messages.

Off unless a FaultPlan is given (`StackOptions.faults`, `python -m herald_local --faults plan.json`),
or set while the stack runs (`herald faults on`, through the control endpoint): the injector always
sits in the path and passes every call straight through while it has no plan. It lives in
herald_local only: the template and the functions' code never see it. It works from outside, the
way the real failures reach Herald: it wraps each deliver function's channel senders (through the
local stack's dependency hook), the local event source mapping's receive (a copy sent again,
arriving later) and its invocations (copies handled at the same moment as the original: in the
same batch, and in another batch running alongside).

Every decision is a pure function of the plan's seed and what it is about (the delivery and how
many times the injector saw it; the message and its receive count), so a plan gives the same
decisions for the same traffic whatever the thread interleaving, and its rates hold over many
deliveries.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Protocol

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, model_validator

from herald.logic.ports import ChannelSender
from herald.models.domain import Channel, DeliveryJob

Rate = Annotated[float, Field(ge=0.0, le=1.0)]

# What each provider answers when it is overloaded or down: retried by Herald (none is permanent).
TRANSIENT_ERRORS: dict[Channel, tuple[str, ...]] = {
    Channel.EMAIL: ("Throttling", "ServiceUnavailable"),
    Channel.SMS: ("Throttled", "InternalError"),
    Channel.PUSH: ("Throttled", "InternalError"),
    Channel.IN_APP: ("ProvisionedThroughputExceededException", "InternalServerError"),
}
# What each provider answers when the address can never work. The in-app inbox is Herald's own
# table: no answer of DynamoDB means "never for this device", so in_app has no permanent fault.
PERMANENT_ERRORS: dict[Channel, str] = {
    Channel.EMAIL: "MessageRejected",
    Channel.SMS: "InvalidParameter",
    Channel.PUSH: "EndpointDisabled",
}
OPERATIONS: dict[Channel, str] = {
    Channel.EMAIL: "SendEmail",
    Channel.SMS: "Publish",
    Channel.PUSH: "Publish",
    Channel.IN_APP: "PutItem",
}


class SimulatedCrash(BaseException):
    """The Lambda process died after the provider accepted the delivery, before its status was written.

    A BaseException, not an Exception, so no `except Exception` (Herald's own, Powertools' batch
    processor) can turn it into an ordinary failed record: the whole invocation fails, as when
    the runtime exits.
    """


class ChannelFaults(BaseModel):
    """What goes wrong with one channel's provider, per call."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    transient_rate: Rate = 0.0  # raise a retryable ClientError; the provider is not called
    permanent_rate: Rate = 0.0  # raise the channel's permanent ClientError; the provider is not called
    crash_after_send_rate: Rate = 0.0  # call the provider, then raise SimulatedCrash
    latency_ms: int = Field(default=0, ge=0)  # added before every call...
    latency_jitter_ms: int = Field(default=0, ge=0)  # ...plus uniformly 0 to this

    @model_validator(mode="after")
    def _rates_fit(self) -> ChannelFaults:
        if self.transient_rate + self.permanent_rate + self.crash_after_send_rate > 1.0:
            raise ValueError("transient_rate + permanent_rate + crash_after_send_rate must not exceed 1")
        return self


class FaultPlan(BaseModel):
    """Faults for a whole local stack. `default` applies to every channel not named in `channels`;
    its permanent_rate is not applied to in_app (no permanent in-app failure exists)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = 0
    default: ChannelFaults = ChannelFaults()
    channels: dict[Channel, ChannelFaults] = {}
    duplicate_rate: Rate = 0.0  # fraction of received queue messages sent again to their queue
    # Fraction of received messages handled together with copies of themselves, all at once:
    # `copies_in_batch` more records in the same batch, `copies_in_parallel_batch` in another batch
    # invoked at the same moment (FunctionWithCopies).
    concurrent_copy_rate: Rate = 0.0
    copies_in_batch: int = Field(default=2, ge=0, le=9)
    copies_in_parallel_batch: int = Field(default=2, ge=0, le=10)

    @model_validator(mode="after")
    def _copies_when_asked(self) -> FaultPlan:
        if self.concurrent_copy_rate > 0 and self.copies_in_batch + self.copies_in_parallel_batch == 0:
            raise ValueError("concurrent_copy_rate needs copies_in_batch or copies_in_parallel_batch above 0")
        return self

    @model_validator(mode="after")
    def _in_app_never_fails_for_good(self) -> FaultPlan:
        in_app = self.channels.get(Channel.IN_APP)
        if in_app is not None and in_app.permanent_rate > 0:
            raise ValueError("channels.in_app.permanent_rate: the in-app inbox has no permanent failure; use 0")
        return self

    def for_channel(self, channel: Channel) -> ChannelFaults:
        if channel in self.channels:
            return self.channels[channel]
        if channel is Channel.IN_APP:
            return self.default.model_copy(update={"permanent_rate": 0.0})
        return self.default


class ChannelCounts(BaseModel):
    provider_calls: int = 0  # calls that reached the real provider (crashes after send included)
    transient: int = 0
    permanent: int = 0
    crashes: int = 0
    added_latency_ms: float = 0.0


class CopyCounts(BaseModel):
    """Concurrent copies handed to one queue's function."""

    messages: int = 0  # messages that got copies
    in_batch: int = 0  # copies in the same batch as their original
    in_parallel_batch: int = 0  # copies in a batch invoked alongside


class FaultCounts(BaseModel):
    channels: dict[Channel, ChannelCounts]
    duplicates: dict[str, int]  # per queue URL: copies sent
    concurrent_copies: dict[str, CopyCounts] = {}  # per queue URL

    @property
    def provider_calls(self) -> int:
        return sum(counts.provider_calls for counts in self.channels.values())

    @property
    def duplicates_total(self) -> int:
        return sum(self.duplicates.values())


def draw(seed: int, *about: object) -> float:
    """A uniform number in [0, 1) fixed by the seed and what it is about."""
    key = "|".join(str(part) for part in (seed, *about)).encode()
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2**64


class FaultInjector:
    """Applies a FaultPlan and counts what it did. Thread-safe: pollers call it concurrently.

    The plan can be set and cleared at any time (`plan = ...`, `plan = None`): each call reads the
    plan once, so a call sees either the old plan or the new one, whole. No plan: no faults.
    """

    def __init__(self, plan: FaultPlan | None = None, sleep: Callable[[float], None] = time.sleep):
        self._plan = plan
        self._sleep = sleep
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, ...], int] = {}
        self._channels = {channel: ChannelCounts() for channel in Channel}
        self._duplicates: dict[str, int] = {}
        self._copies: dict[str, CopyCounts] = {}

    @property
    def plan(self) -> FaultPlan | None:
        with self._lock:
            return self._plan

    @plan.setter
    def plan(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self._plan = plan

    # ---------------------------------------------------------------- providers
    def wrap(self, channel: Channel, sender: ChannelSender) -> ChannelSender:
        return FaultySender(self, channel, sender)

    def wrap_senders(self, senders: Mapping[Channel, ChannelSender]) -> dict[Channel, ChannelSender]:
        return {channel: self.wrap(channel, sender) for channel, sender in senders.items()}

    def hook(self, function: str, dependencies: Any) -> Any:
        """A DependencyHook: a deliver function's senders, wrapped; any other function untouched."""
        senders = getattr(dependencies, "senders", None)
        if senders is None or not dataclasses.is_dataclass(dependencies) or isinstance(dependencies, type):
            return dependencies
        return dataclasses.replace(dependencies, senders=self.wrap_senders(senders))

    def send(self, channel: Channel, sender: ChannelSender, job: DeliveryJob) -> str:
        plan = self.plan
        if plan is None:
            return sender.send(job)
        faults = plan.for_channel(channel)
        delivery = (channel.value, job.notification_id, job.user_id, job.device_id)
        with self._lock:
            nth = self._seen[delivery] = self._seen.get(delivery, 0) + 1
        counts = self._channels[channel]
        if faults.latency_ms or faults.latency_jitter_ms:
            added = faults.latency_ms + faults.latency_jitter_ms * draw(plan.seed, "latency", *delivery, nth)
            with self._lock:
                counts.added_latency_ms += added
            self._sleep(added / 1000)
        roll = draw(plan.seed, "provider", *delivery, nth)
        if roll < faults.transient_rate:
            with self._lock:
                counts.transient += 1
            codes = TRANSIENT_ERRORS[channel]
            raise _client_error(channel, codes[nth % len(codes)], 503, "injected transient failure")
        if roll < faults.transient_rate + faults.permanent_rate:
            with self._lock:
                counts.permanent += 1
            raise _client_error(channel, PERMANENT_ERRORS[channel], 400, "injected permanent failure")
        crash = roll < faults.transient_rate + faults.permanent_rate + faults.crash_after_send_rate
        with self._lock:
            counts.provider_calls += 1
        message_id = sender.send(job)
        if crash:
            with self._lock:
                counts.crashes += 1
            raise SimulatedCrash(f"injected crash after {channel.value} provider accepted {message_id}")
        return message_id

    # ---------------------------------------------------------------- queues
    def should_duplicate(self, queue_url: str, message: Mapping[str, Any]) -> bool:
        """Whether this receive of `message` is delivered twice (decided per message id and receive count)."""
        plan = self.plan
        if plan is None or plan.duplicate_rate <= 0:
            return False
        receive_count = message.get("Attributes", {}).get("ApproximateReceiveCount", "1")
        return draw(plan.seed, "duplicate", queue_url, message["MessageId"], receive_count) < plan.duplicate_rate

    def duplicated(self, queue_url: str) -> None:
        with self._lock:
            self._duplicates[queue_url] = self._duplicates.get(queue_url, 0) + 1

    def should_copy(self, plan: FaultPlan | None, queue_url: str, record: Mapping[str, Any]) -> bool:
        """Whether this receive of a record is handled together with concurrent copies of itself, as
        `plan` (the injector's, read once by the caller for the whole batch) says."""
        if plan is None or plan.concurrent_copy_rate <= 0:
            return False
        receive_count = record.get("attributes", {}).get("ApproximateReceiveCount", "1")
        return draw(plan.seed, "copies", queue_url, record["messageId"], receive_count) < plan.concurrent_copy_rate

    def with_concurrent_copies(self, function: Invocable, queue_url: str) -> FunctionWithCopies:
        """`function`, as the event source mapping of `queue_url` invokes it, with the plan's concurrent copies."""
        return FunctionWithCopies(self, function, queue_url)

    def copied(self, queue_url: str, in_batch: int, in_parallel_batch: int) -> None:
        with self._lock:
            counts = self._copies.setdefault(queue_url, CopyCounts())
            counts.messages += 1
            counts.in_batch += in_batch
            counts.in_parallel_batch += in_parallel_batch

    def counts(self) -> FaultCounts:
        with self._lock:
            return FaultCounts(
                channels={channel: counts.model_copy() for channel, counts in self._channels.items()},
                duplicates=dict(self._duplicates),
                concurrent_copies={url: counts.model_copy() for url, counts in self._copies.items()},
            )


class FaultySender:
    """A ChannelSender whose provider fails, lags or crashes the process as the plan says."""

    def __init__(self, injector: FaultInjector, channel: Channel, sender: ChannelSender):
        self._injector = injector
        self._channel = channel
        self.wrapped = sender

    def send(self, job: DeliveryJob) -> str:
        return self._injector.send(self._channel, self.wrapped, job)


class Invocable(Protocol):
    """What the event source mapping invokes: a local function (herald_local/functions.py)."""

    name: str

    def invoke(self, event: dict[str, Any]) -> Any: ...


class FunctionWithCopies:
    """A queue's function, some of whose records are handled together with copies of themselves.

    A copy is the record again under another message id (`<id>-copy<n>`), same body, attributes and
    receipt handle: what SQS does when it hands one message to two consumers at once, or when a
    message was sent twice (an SNS retry). `copies_in_batch` copies join the original's batch, so
    the function handles them side by side; `copies_in_parallel_batch` form a batch of their own,
    invoked at the same instant on another thread, as a second Lambda would. Only the original's
    outcome decides what the mapping deletes: a copy's failure is dropped from the batch response
    (the original is still in the queue if it matters), and a parallel batch's outcome is ignored.
    """

    def __init__(self, injector: FaultInjector, function: Invocable, queue_url: str):
        self._injector = injector
        self._function = function
        self._queue_url = queue_url
        self.name = function.name

    def __getattr__(self, name: str) -> Any:
        return getattr(self._function, name)  # spec, journal...: the function's own

    def invoke(self, event: dict[str, Any]) -> Any:
        plan = self._injector.plan
        records: list[dict[str, Any]] = list(event.get("Records", []))
        chosen = [record for record in records if self._injector.should_copy(plan, self._queue_url, record)]
        if plan is None or not chosen:
            return self._function.invoke(event)
        chosen_ids = {record["messageId"] for record in chosen}
        batch: list[dict[str, Any]] = []
        for record in records:  # each copy right behind its original: they start side by side
            batch.append(record)
            if record["messageId"] in chosen_ids:
                batch.extend(_copy(record, n) for n in range(plan.copies_in_batch))
        parallel = [
            _copy(record, plan.copies_in_batch + n) for record in chosen for n in range(plan.copies_in_parallel_batch)
        ]
        for _ in chosen:
            self._injector.copied(self._queue_url, plan.copies_in_batch, plan.copies_in_parallel_batch)
        together = threading.Barrier(2 if parallel else 1)
        other = threading.Thread(target=self._invoke_copies, args=(parallel, together), daemon=True)
        if parallel:
            other.start()
        try:
            _meet(together)
            result = self._function.invoke({**event, "Records": batch})
        finally:
            if parallel:
                other.join()
        copies = {record["messageId"] for record in batch} - {record["messageId"] for record in records}
        if isinstance(result, dict) and "batchItemFailures" in result:
            failures = [f for f in result["batchItemFailures"] if _failed_id(f) not in copies]
            result = {**result, "batchItemFailures": failures}
        return result

    def _invoke_copies(self, records: list[dict[str, Any]], together: threading.Barrier) -> None:
        _meet(together)
        with contextlib.suppress(Exception):  # a copy's batch that fails or crashes: the original carries on
            self._function.invoke({"Records": records})


def _copy(record: dict[str, Any], n: int) -> dict[str, Any]:
    return {**record, "messageId": f"{record['messageId']}-copy{n}"}


def _failed_id(failure: Any) -> Any:
    return failure.get("itemIdentifier") if isinstance(failure, dict) else None


def _meet(barrier: threading.Barrier) -> None:
    with contextlib.suppress(threading.BrokenBarrierError):  # the other side is late: go on alone, never hang
        barrier.wait(timeout=5)


def _client_error(channel: Channel, code: str, http_status: int, message: str) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": http_status}},
        OPERATIONS[channel],
    )


def duplicate_message(queue_url: str, message: Mapping[str, Any]) -> dict[str, Any]:
    """SendMessage arguments for a copy of a received message: same body, same message attributes."""
    attributes = {
        name: {key: value[key] for key in ("DataType", "StringValue", "BinaryValue") if key in value}
        for name, value in message.get("MessageAttributes", {}).items()
    }
    request: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": message["Body"]}
    if attributes:
        request["MessageAttributes"] = attributes
    return request


def compose_hooks(
    *hooks: Callable[[str, Any], Any] | None,
) -> Callable[[str, Any], Any] | None:
    """One DependencyHook applying each given hook in turn (the first wraps innermost)."""
    present = [hook for hook in hooks if hook is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]

    def composed(function: str, dependencies: Any) -> Any:
        for hook in present:
            dependencies = hook(function, dependencies)
        return dependencies

    return composed
