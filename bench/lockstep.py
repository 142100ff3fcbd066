"""A case run through the local stack one batch at a time, recorded call by call: counts that do not
depend on how busy the machine is.

The local stack's pollers hand a function whatever a receive returns at that moment, so how many
messages share a batch, and with it how many invocations, receives and deletes a notification
costs, moves with the machine's load. Here they are stopped, and each event source mapping is
driven in turn: its queue read `fill` messages at a time (the mapping's own receive, the mapping's
own invoke-then-delete-what-succeeded), one batch after another, until every queue is empty. A
mapping's fill follows from the template and a stated arrival rate (`fill_of`), never from timing.

What a case did is kept as a `Recording`: each invocation with its records and its AWS calls (and
the units they bill as), and the mappings' receives and deletes. Everything the cost model prices
is read from it, so the same recording always gives the same bill.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from bench.calls import Origin, Tally
from bench.report import BenchError

SQS_MESSAGES_PER_CALL = 10
# Notifications per second, sustained, on one lane. A mapping with a batching window fills its batch
# when its queue gets at least batch size / window messages a second; at this rate the normal
# lane's (10 in 1 s) and the low lane's (50 in 5 s) do. A million notifications at this rate take 28 hours.
ARRIVALS_PER_SECOND = 10.0


def fill_of(batch_size: int, window_seconds: float, messages_per_second: float) -> int:
    """Messages per batch a mapping hands its function at a steady arrival rate.

    Without a window, Lambda invokes as soon as a receive returns anything: at these rates that is
    one message (the next arrives 100 ms later). With one, it collects until the batch is full or the
    window ends.
    """
    if window_seconds <= 0:
        return 1
    return max(1, min(batch_size, math.floor(messages_per_second * window_seconds)))


@dataclass(frozen=True)
class CallCount:
    """Calls of one kind (service, operation, resource as its role in the template) and what they bill as."""

    service: str
    operation: str
    resource: str
    calls: int
    units: float  # DynamoDB write or read units, SQS or SNS requests (64 KB chunks), else calls


@dataclass(frozen=True)
class Invocation:
    """One Lambda invocation: which function, how many records (0 for an API request), the notifications
    they belong to, and Herald's AWS calls during it."""

    function: str  # the template's logical id
    handler: str  # the functions/<handler>/ package: api, fanout, deliver
    records: int
    notifications: int  # distinct notifications among its records (1 for an API request)
    lanes: int  # records whose calls may overlap (the function's parallel sends)
    calls: tuple[CallCount, ...]

    def count(self, service: str, operation: str, resource: str | None = None) -> int:
        return sum(
            c.calls
            for c in self.calls
            if (c.service, c.operation) == (service, operation) and resource in (None, c.resource)
        )


@dataclass(frozen=True)
class Recording:
    """What a number of notifications of one case did on the local stack."""

    case: str
    notifications: int
    deliveries: int
    invocations: tuple[Invocation, ...]
    mapping: tuple[CallCount, ...]  # the event source mappings' receives (that returned messages) and deletes
    memory_mb: Mapping[str, int]  # per function, from template.yaml
    architecture: Mapping[str, str]
    fills: Mapping[str, int] = field(default_factory=dict)  # messages per batch, per mapping, as driven

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Recording:
        return cls(
            case=data["case"],
            notifications=data["notifications"],
            deliveries=data["deliveries"],
            invocations=tuple(
                Invocation(**{**i, "calls": tuple(CallCount(**c) for c in i["calls"])}) for i in data["invocations"]
            ),
            mapping=tuple(CallCount(**c) for c in data["mapping"]),
            memory_mb=dict(data["memory_mb"]),
            architecture=dict(data["architecture"]),
            fills=dict(data.get("fills", {})),
        )

    def dumps(self) -> str:
        return json.dumps(self.as_json(), sort_keys=True)


def call_counts(tally: Tally, origin: str, role: Callable[[str], str]) -> tuple[CallCount, ...]:
    """The calls of one origin in a tally, by (service, operation, role), empty receives left out."""
    calls: Counter[tuple[str, str, str]] = Counter()
    units: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    for key, n in tally.calls.items():
        if key.origin != origin:
            continue
        kind = (key.service, key.operation, role(key.resource))
        empty = tally.empty_receives[key] if key.operation == "ReceiveMessage" else 0
        calls[kind] += n - empty
        # An empty receive bills as one request: its units go with it.
        units[kind] += tally.units[key] - empty
    return tuple(CallCount(*kind, calls[kind], units[kind]) for kind in sorted(calls) if calls[kind])


def message_facts(body: str) -> tuple[str, str]:
    """(notification id, channel) of a queue message: an intake notification, a delivery job, or a group of a
    recipient's jobs (its first job's)."""
    try:
        data = json.loads(body)
    except ValueError:
        return "", ""
    if isinstance(data, dict) and isinstance(data.get("job"), dict):
        data = data["job"]
    if not isinstance(data, dict):
        return "", ""
    return str(data.get("notification_id", "")), str(data.get("channel", ""))


class Lockstep:
    """Drives a started BenchStack's mappings one batch at a time, for one case (the stack's pollers are
    stopped for good: a stopped poller stays stopped)."""

    def __init__(self, bench: Any, arrivals_per_second: float = ARRIVALS_PER_SECOND):
        self.bench = bench
        self.arrivals = arrivals_per_second
        for poller in bench.stack.pollers:
            poller.stop()
        self.pollers = list(bench.stack.pollers)
        self.invocations: list[Invocation] = []
        self.fills: dict[str, int] = {}

    def _role(self, resource: str) -> str:
        return str(self.bench.role(resource))

    def _herald_calls(self, tally: Tally) -> tuple[CallCount, ...]:
        return call_counts(tally, Origin.HERALD, self._role)

    def record_api(self, send: Callable[[], object], function: str) -> None:
        """One API request (whatever `send` does over HTTP), recorded as its function's invocation."""
        before = self.bench.counter.snapshot()
        send()
        calls = self._herald_calls(self.bench.counter.snapshot().since(before))
        self.invocations.append(Invocation(function, "api", 0, 1, 1, calls))

    def drain(self, notifications: int, done: Callable[[Iterable[Invocation]], bool], timeout: float = 120) -> None:
        """Runs every mapping, batch after batch, until every queue is empty and `done` says all arrived
        (SNS may deliver to a queue after the publish returns, on some backends)."""
        deadline = time.monotonic() + timeout
        while True:
            worked = False
            for poller in self.pollers:
                worked |= self._drain_one(poller, notifications)
            if not worked:
                if done(self.invocations):
                    return
                if time.monotonic() > deadline:
                    raise BenchError(f"the queues went quiet before every delivery was made ({timeout:g} s)")
                time.sleep(0.05)

    def _drain_one(self, poller: Any, notifications: int) -> bool:
        spec = poller.spec
        depth = self.bench.queue_depth(spec.queue)
        if not depth:
            return False
        fill = self.fills.setdefault(
            spec.name, fill_of(spec.batch_size, spec.batching_window, self.arrivals * depth / notifications)
        )
        function = self.bench.stack.functions[spec.function]
        worked = False
        while True:
            # The mapping's own receive (as a full mapping would make it: at most 10 messages a call).
            messages: list[dict[str, Any]] = []
            while len(messages) < fill:
                more = poller._receive(min(fill - len(messages), SQS_MESSAGES_PER_CALL))
                if not more:
                    break
                messages.extend(more)
            if not messages:
                return worked
            worked = True
            facts = [message_facts(m["Body"]) for m in messages]
            before = self.bench.counter.snapshot()
            poller._slots.acquire()  # _invoke releases the slot it was given, as the poller's loop does
            poller._invoke(messages)  # the mapping's invoke, then its delete of what succeeded
            calls = self._herald_calls(self.bench.counter.snapshot().since(before))
            handler = function.spec.handler.split(".", 1)[0]
            self.invocations.append(
                Invocation(
                    spec.function,
                    handler,
                    len(messages),
                    len({notification for notification, _ in facts}),
                    lanes_of(function, {channel for _, channel in facts if channel}),
                    calls,
                )
            )


def lanes_of(function: Any, channels: set[str]) -> int:
    """How many records of a batch the function calls providers for at once: its parallel sends,
    capped by the smallest per-channel limit of the channels in the batch."""
    settings = getattr(function.dependencies, "settings", None)
    lanes = int(getattr(settings, "parallel_sends", 1))
    for channel in channels:
        lanes = min(lanes, int(getattr(settings, f"{channel}_parallel_sends", lanes)))
    return max(1, lanes)


def mapping_calls(tally: Tally, role: Callable[[str], str]) -> tuple[CallCount, ...]:
    """The mappings' receives that returned messages, and their deletes."""
    return call_counts(tally, Origin.POLLER, role)


PROVIDER_CALLS = frozenset(
    {("sns", "Publish", "endpoint"), ("sns", "Publish", "phone"), ("dynamodb", "PutItem", "InboxTable")}
)


def is_delivery(call: CallCount) -> bool:
    """A provider call (SNS to an endpoint or a phone, SES) or an in-app inbox write."""
    return call.service == "ses" or (call.service, call.operation, call.resource) in PROVIDER_CALLS


def provider_calls(invocations: Iterable[Invocation]) -> int:
    """Deliveries made, counted by their provider calls."""
    return sum(c.calls for invocation in invocations for c in invocation.calls if is_delivery(c))
