"""What each cost lever would save, by the model: a lever rewrites a recording as the changed design would
have made it (fewer calls, other batches, other memory), and the bill of the rewritten recording is
compared with the one before. Levers apply in order, each on top of the ones before it.

These are estimates of designs not built yet: each rewrite states what it assumes. The figures to
judge a design by are those of `bench.cost` run on its code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace

from bench.capacity import write_units
from bench.lockstep import ARRIVALS_PER_SECOND, SQS_MESSAGES_PER_CALL, CallCount, Invocation, Recording, fill_of

# A recipient's status item (one per notification per deliver batch before lever 6): its keys, claim and
# timestamps, then per delivery its status, attempts and provider message id. Measured 2026-12-01 on the
# local stack: 381 bytes with 3 push devices sent (the model: 60 + 3 x 110 = 390).
GROUP_ITEM_BYTES = 60
GROUP_ENTRY_BYTES = 110
INTAKE_WINDOW_SECONDS = 1  # the window the intake lever gives the normal and low lanes
INTAKE_BATCH_SIZE = 10
SMALLEST_MEMORY_MB = 128


@dataclass(frozen=True)
class Lever:
    name: str
    trade_off: str
    rewrite: Callable[[Recording], Recording]


@dataclass(frozen=True)
class Step:
    lever: Lever
    saves: float  # USD per million notifications, against the step before
    total: float  # Herald's own overhead after this step


def path_of(recording: Recording, levers: Iterable[Lever], bill_of: Callable[[Recording], object]) -> list[Step]:
    """Each lever applied on top of the ones before it: what it saves, and the overhead after it."""
    steps = []
    before = _total(bill_of(recording))
    for lever in levers:
        recording = lever.rewrite(recording)
        after = _total(bill_of(recording))
        steps.append(Step(lever, before - after, after))
        before = after
    return steps


def _total(bill: object) -> float:
    return float(bill.total)  # type: ignore[attr-defined]


def _with_calls(invocation: Invocation, change: Callable[[CallCount], CallCount | None]) -> Invocation:
    calls = tuple(c for c in (change(call) for call in invocation.calls) if c is not None and c.calls > 0)
    return replace(invocation, calls=calls)


def _is(call: CallCount, service: str, operation: str, resource: str | None = None) -> bool:
    return (call.service, call.operation) == (service, operation) and resource in (None, call.resource)


# --- the levers of issue 11 ------------------------------------------------------------------------------


def grouped_status_writes(recording: Recording) -> Recording:
    """A deliver batch claims, then records the outcomes of, each notification's deliveries in it with one
    conditional write each: 2 writes per (notification, batch) instead of 2 per delivery."""

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "deliver" or not invocation.records:
            return invocation
        per_group = invocation.records / invocation.notifications
        units = write_units(math.ceil(GROUP_ITEM_BYTES + GROUP_ENTRY_BYTES * per_group))

        def change(call: CallCount) -> CallCount:
            if _is(call, "dynamodb", "UpdateItem", "StatusTable"):
                writes = 2 * invocation.notifications
                return replace(call, calls=writes, units=writes * units)
            return call

        return _with_calls(invocation, change)

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


def one_accept_write(recording: Recording) -> Recording:
    """The fan-out's claim and its "fanned out" record become one conditional write: one summary write
    fewer per notification (the accepted record and the fan-out's one write remain). Built (lever 2): prices
    a recording of the design before it."""

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "fanout":
            return invocation

        def change(call: CallCount) -> CallCount:
            if _is(call, "dynamodb", "UpdateItem", "StatusTable") and call.calls:
                fewer = min(invocation.notifications, call.calls)
                return replace(call, calls=call.calls - fewer, units=call.units * (call.calls - fewer) / call.calls)
            return call

        return _with_calls(invocation, change)

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


def intake_window(recording: Recording) -> Recording:
    """The normal and low intake lanes get a batching window: at the stated arrival rate each fan-out batch
    holds `fill` notifications instead of one. Fan-out invocations merge (their calls add up: nothing
    is shared yet), and the intake's receives and deletes fall to one per full batch."""
    fill = fill_of(INTAKE_BATCH_SIZE, INTAKE_WINDOW_SECONDS, ARRIVALS_PER_SECOND)
    fanouts = [i for i in recording.invocations if i.handler == "fanout"]
    others = [i for i in recording.invocations if i.handler != "fanout"]
    merged = []
    for start in range(0, len(fanouts), fill):
        group = fanouts[start : start + fill]
        calls: dict[tuple[str, str, str], list[float]] = {}
        for invocation in group:
            for c in invocation.calls:
                total = calls.setdefault((c.service, c.operation, c.resource), [0, 0.0])
                total[0] += c.calls
                total[1] += c.units
        merged.append(
            Invocation(
                group[0].function,
                "fanout",
                sum(i.records for i in group),
                sum(i.notifications for i in group),
                1,
                tuple(CallCount(*kind, int(n), units) for kind, (n, units) in sorted(calls.items())),
            )
        )
    batches = sum(math.ceil(i.records / SQS_MESSAGES_PER_CALL) for i in merged)
    mapping = tuple(
        replace(c, calls=batches, units=float(batches))
        if c.service == "sqs" and c.resource.endswith("IntakeQueue")
        else c
        for c in recording.mapping
    )
    fills = {name: (fill if "Intake" in name else value) for name, value in recording.fills.items()}
    return replace(recording, invocations=(*others, *merged), mapping=mapping, fills=fills)


def packed_publishes(recording: Recording) -> Recording:
    """A fan-out batch packs the deliveries of all its notifications into PublishBatch calls of 10,
    instead of rounding up per notification (saves only where batches hold several notifications)."""
    per_notification = recording.deliveries / recording.notifications

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "fanout":
            return invocation
        publishes = math.ceil(per_notification * invocation.notifications / 10)

        def change(call: CallCount) -> CallCount:
            if _is(call, "sns", "PublishBatch"):
                return replace(call, calls=publishes, units=float(publishes))
            return call

        return _with_calls(invocation, change)

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


def smallest_memory(recording: Recording) -> Recording:
    """Every function at 128 MB. By the model the CPU part of a duration costs the same at any size up to
    one vCPU (less memory, proportionally less CPU), while the waits cost in proportion to memory."""
    return replace(recording, memory_mb={name: SMALLEST_MEMORY_MB for name in recording.memory_mb})


def idempotency_in_accepted_record(recording: Recording) -> Recording:
    """A keyed request's idempotency record and its accepted record are one item: the key's conditional
    claim writes the accepted record, and no separate completion write follows."""

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "api":
            return invocation
        return _with_calls(invocation, lambda c: None if c.resource == "IdempotencyTable" else c)

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


# --- beyond issue 11's list, keeping every promise: built as lever 8 (2026-12-01) ---------------------------


def group_jobs(recording: Recording) -> Recording:
    """Built (lever 8): prices a recording of the design before it. One job per recipient and channel instead of
    one per device: the fan-out publishes one entry for a
    recipient's devices of a channel, and the deliver batch receives it as one record (its devices still sent
    in parallel, and claimed and recorded as now). Assumes what holds in every case here: a notification has
    one recipient and one channel, so one job; and a deliver batch is cut by its window, not its size (at the
    modelled rate 30 deliveries, or 10 group jobs, arrive in a window), so the invocations stay as they are."""
    per_job = recording.deliveries / recording.notifications
    if per_job <= 1:
        return recording
    queues = _deliver_queues(recording)

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler == "fanout":
            publishes = math.ceil(invocation.notifications / 10)  # 10 entries a PublishBatch, one per job
            return _with_calls(
                invocation,
                lambda c: replace(c, calls=publishes, units=float(publishes)) if _is(c, "sns", "PublishBatch") else c,
            )
        if invocation.handler == "deliver":
            return replace(invocation, records=invocation.notifications)
        return invocation

    invocations = tuple(rewrite(i) for i in recording.invocations)
    batches: dict[str, int] = {}
    for invocation in invocations:
        if invocation.handler == "deliver":
            queue = queues[invocation.function]
            batches[queue] = batches.get(queue, 0) + math.ceil(invocation.records / SQS_MESSAGES_PER_CALL)
    mapping = tuple(
        replace(c, calls=batches[c.resource], units=float(batches[c.resource])) if c.resource in batches else c
        for c in recording.mapping
    )
    fills = {
        name: (max(1, round(value / per_job)) if any(name == f + q for f, q in queues.items()) else value)
        for name, value in recording.fills.items()
    }
    return replace(recording, invocations=invocations, mapping=mapping, fills=fills)


def _deliver_queues(recording: Recording) -> dict[str, str]:
    """Each deliver function's queue, read from the fills' keys (`<function><queue>`)."""
    functions = {i.function for i in recording.invocations if i.handler == "deliver"}
    return {f: name[len(f) :] for f in functions for name in recording.fills if name.startswith(f)}


# --- beyond issue 11's list: what the path to $2.50 with 3 devices would take --------------------------


def no_accepted_record(recording: Recording) -> Recording:
    """The API writes nothing to DynamoDB: the intake message stands for the notification until its
    fan-out writes the summary (with the request) in its one write."""

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "api":
            return invocation
        return _with_calls(invocation, lambda c: None if _is(c, "dynamodb", "PutItem", "StatusTable") else c)

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


def outcome_without_claim(recording: Recording) -> Recording:
    """A deliver batch writes each group's outcomes once, with no claim before the provider calls."""

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "deliver":
            return invocation

        def change(call: CallCount) -> CallCount:
            if _is(call, "dynamodb", "UpdateItem", "StatusTable"):
                return replace(call, calls=call.calls // 2, units=call.units / 2)
            return call

        return _with_calls(invocation, change)

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


def no_fan_out_write(recording: Recording) -> Recording:
    """The fan-out writes (and reads) no status: the deliveries' own records are the status (a notification
    with no device, or skipped ones, would still get a write of its own: none in these cases). A one-recipient
    notification's page record is its history entry (HistoryTable): that write stays, as the entry."""

    def rewrite(invocation: Invocation) -> Invocation:
        if invocation.handler != "fanout":
            return invocation
        return _with_calls(
            invocation,
            lambda c: None if _is(c, "dynamodb", "UpdateItem", "StatusTable") or _is(c, "dynamodb", "GetItem") else c,
        )

    return replace(recording, invocations=tuple(rewrite(i) for i in recording.invocations))


def fan_out_in_the_api(recording: Recording) -> Recording:
    """The API reads the devices and publishes the deliveries itself: no intake queue, no fan-out
    function. Each API request makes what a fan-out made per notification (its PublishBatch rounded up
    per notification again); the intake's send, receives and deletes go."""
    fanouts = [i for i in recording.invocations if i.handler == "fanout"]
    if not fanouts:
        return recording
    n = recording.notifications
    per_notification: dict[tuple[str, str, str], list[float]] = {}
    for invocation in fanouts:
        for c in invocation.calls:
            total = per_notification.setdefault((c.service, c.operation, c.resource), [0, 0.0])
            total[0] += c.calls / n
            total[1] += c.units / n
    publishes = math.ceil(recording.deliveries / n / 10)
    per_notification[("sns", "PublishBatch", "NotificationsTopic")] = [publishes, float(publishes)]
    added = tuple(CallCount(*kind, round(calls), units) for kind, (calls, units) in sorted(per_notification.items()))

    def rewrite(invocation: Invocation) -> Invocation:
        kept = tuple(c for c in invocation.calls if not _is(c, "sqs", "SendMessage"))
        return replace(invocation, calls=kept + added)

    invocations = tuple(rewrite(i) if i.handler == "api" else i for i in recording.invocations if i.handler != "fanout")
    mapping = tuple(c for c in recording.mapping if not c.resource.endswith("IntakeQueue"))
    return replace(recording, invocations=invocations, mapping=mapping)


# Built on 2026-11-30 (issue 11): their saving is now in the measured figures, so the path no longer applies
# them. Kept to price a recording of the design before them (docs/performance.md quotes both).
BUILT = (
    Lever(
        f"{INTAKE_WINDOW_SECONDS} s batching window on the normal and low intake lanes",
        f"up to {INTAKE_WINDOW_SECONDS} s more latency for normal and low; batches fill only at 10+ notifications/s",
        intake_window,
    ),
    Lever(
        "PublishBatch packed across a batch's notifications",
        "a failed shared publish makes each page publish alone (a job published twice is sent once)",
        packed_publishes,
    ),
    Lever(
        "one fan-out write (claim and 'fanned out' in one, before publishing)",
        "a copy of a page's message that finds it recorded publishes it again (each delivery's claim sends once);"
        " a cancel is a conditional write on the same item, so exactly one of the two wins",
        one_accept_write,
    ),
    Lever(
        "one job per recipient and channel (not per device)",
        "the job contract changes; a job whose devices end differently is retried whole (its sent devices are"
        " found claimed and skipped) and dead-lettered whole; a job's size grows with its devices",
        group_jobs,
    ),
    Lever(
        "grouped status writes (a claim, an outcome per recipient per batch)",
        "status items per recipient; a crash between a group's provider calls and its outcome write leaves the"
        " whole group 'outcome unknown'",
        grouped_status_writes,
    ),
)

LEVERS = (
    Lever(
        f"Lambda memory {SMALLEST_MEMORY_MB} MB",
        "CPU-bound work 2x slower (API answers later); less headroom: check Max Memory Used per function",
        smallest_memory,
    ),
    Lever(
        "idempotency record merged with the accepted record",
        "the idempotency table goes; keys live in the status table as long as the status does",
        idempotency_in_accepted_record,
    ),
)

BEYOND = (
    Lever(
        "no accepted record (the fan-out's write creates it)",
        "GET /notifications/{id} answers 404 until fan-out (a fraction of a second, longer under a backlog)",
        no_accepted_record,
    ),
    Lever(
        "outcome only (no claim before the provider calls)",
        "no exactly-once in effect: a duplicate message or a crash after the provider call sends again",
        outcome_without_claim,
    ),
    Lever(
        "deliveries are the status (no fan-out write)",
        "until its first delivery is recorded a notification is unknown (404); no list of queued deliveries;"
        " a duplicate intake message publishes again, and without claims sends again",
        no_fan_out_write,
    ),
    Lever(
        "fan-out in the API (no intake queue)",
        "the API's answer waits for the device query and the publish; no intake buffer, no priority lanes at "
        "the front door, a DynamoDB or SNS outage turns into 5xx for the caller",
        fan_out_in_the_api,
    ),
)
