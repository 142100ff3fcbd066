"""Priority under a flood: a high-priority notification's latency alone, then right behind a flood of
low-priority notifications, hop by hop, on the local stack (in-app devices).

`python -m bench.priority [--scale tiny|full] [--backend ...] [--no-precedence]`. Budgets, on the local
stack as `make run` starts it by default (`--backend stack`: moto in a process of its own, no benchmark's
patch of moto; `--backend embedded` puts moto in this process, sharing one interpreter with every lane):
high-priority p99 accepted-to-sent under the flood at most 1.5x its idle p99, and the high notification's
median wait at each queue it passes (intake, then its priority queue; sent to handled) at most 1.2x idle.

The flood is what a new user tries first: 200 users with an in-app device each; 300 low-priority
notifications to 10 of them each (3,000 deliveries), posted from 4 threads; then 30 high-priority
notifications to one user's in-app device, one after another, each polled over HTTP until `sent`.
The idle run is the same 30 with nothing else in flight.

Hops of one high notification, from the stack's own records (the functions' invocations as the
event source mappings make them, and each SQS record's SentTimestamp):
  api         the POST leaving the client to the API's `accepted_at`
  intake      the high intake queue: sent to the start of the fan-out invocation that handles it
  fan-out     that invocation's start to the delivery's SentTimestamp on the high queue (lookup, publish, SNS)
  queue       the high queue: sent to the start of the deliver invocation that handles it
  deliver     that invocation's start to the delivery's `sent_at`
and, inside intake and queue, the part spent in SQS proper (each record's ApproximateFirstReceiveTimestamp, to the
millisecond, as moto sets it): `intake-sqs` and `queue-sqs`, sent to received; the rest of the hop is the event
source mapping's hand-over (the receive's answer, the invocation's start). The budgets are on the whole hops.

The local stack's lane precedence (herald_local/precedence.py: lower lanes give way to a higher lane's batch
in flight) is on, as in `make run`; `--no-precedence` switches it off, to measure what it does.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bench.figures import percentile
from bench.report import BenchError, Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, backend_option, running_stack

FLOOD_BUDGET = 1.5  # high p99 under the flood over idle p99
QUEUE_WAIT_BUDGET = 1.2  # a high notification's median wait at a queue under the flood over idle
SENT_WITHIN_S = 1.0
HOPS = ("api", "intake", "fan-out", "queue", "deliver", "intake-sqs", "queue-sqs")
QUEUES = ("intake", "queue")  # the hops that are a queue's wait
POLL_EVERY = 0.05


@dataclass(frozen=True)
class Plan:
    users: int  # each with one in-app device
    flood_notifications: int  # low priority...
    flood_recipients: int  # ...each to this many of the users
    posting_threads: int
    highs: int  # high-priority notifications per run, one after another

    @property
    def flood_deliveries(self) -> int:
        return self.flood_notifications * self.flood_recipients


PLANS = {
    Scale.TINY: Plan(users=20, flood_notifications=10, flood_recipients=3, posting_threads=2, highs=5),
    Scale.FULL: Plan(users=200, flood_notifications=300, flood_recipients=10, posting_threads=4, highs=30),
}


@dataclass(frozen=True)
class Handled:
    """One invocation of a function that consumes a queue: when it ran and what it held."""

    function: str
    started: float  # epoch seconds
    ended: float
    records: tuple[tuple[str, float, float], ...]  # (notification id, SentTimestamp, ApproximateFirstReceiveTimestamp)


class HopClock:
    """Wraps the stack's functions to keep, per invocation, its start and end and its records' send times."""

    def __init__(self, bench: BenchStack):
        self._lock = threading.Lock()
        self.handled: list[Handled] = []
        for function in bench.stack.functions.values():
            if function.spec.handler.startswith(("fanout.", "deliver.")):
                self._wrap(function)

    def _wrap(self, function: Any) -> None:
        invoke, name = function.invoke, function.name

        def timed(event: dict[str, Any]) -> Any:
            started = time.time()
            try:
                return invoke(event)
            finally:
                records = tuple(
                    (
                        _notification_of(record.get("body", "")),
                        int(record["attributes"]["SentTimestamp"]) / 1000,
                        int(record["attributes"].get("ApproximateFirstReceiveTimestamp", 0)) / 1000,
                    )
                    for record in event.get("Records", [])
                )
                with self._lock:
                    self.handled.append(Handled(name, started, time.time(), records))

        function.invoke = timed

    def first(self, function: str, notification_id: str) -> tuple[Handled, float, float] | None:
        """The first invocation of `function` that held a record of the notification, and that record's send and
        first receive times."""
        with self._lock:
            for handled in self.handled:
                if handled.function != function:
                    continue
                for record_id, sent, received in handled.records:
                    if record_id == notification_id:
                        return handled, sent, received
        return None


def _notification_of(body: str) -> str:
    try:
        return str(json.loads(body).get("notification_id", ""))
    except ValueError:
        return ""


@dataclass
class Sample:
    """One high notification's hops, in seconds."""

    notification_id: str
    hops: dict[str, float]
    accepted_to_sent: float
    post_to_sent: float


@dataclass
class Run:
    name: str
    samples: list[Sample] = field(default_factory=list)
    low_intake_at_start: int = 0
    low_queue_at_start: int = 0
    low_queue_at_end: int = 0
    low_sent_during: int = 0
    seconds: float = 0.0

    def totals(self) -> list[float]:
        return [s.accepted_to_sent for s in self.samples]

    def hop(self, hop: str) -> list[float]:
        return [s.hops[hop] for s in self.samples]

    def p(self, q: float, hop: str | None = None) -> float:
        return percentile(self.hop(hop) if hop else self.totals(), q)

    def as_json(self) -> dict[str, object]:
        return {
            "samples": len(self.samples),
            "p50_s": round(self.p(50), 4),
            "p99_s": round(self.p(99), 4),
            "max_s": round(max(self.totals()), 4),
            "post_to_sent_p99_s": round(percentile([s.post_to_sent for s in self.samples], 99), 4),
            "hops_p50_s": {hop: round(self.p(50, hop), 4) for hop in HOPS},
            "hops_p99_s": {hop: round(self.p(99, hop), 4) for hop in HOPS},
            "low_intake_depth_at_start": self.low_intake_at_start,
            "low_queue_depth_at_start": self.low_queue_at_start,
            "low_queue_depth_at_end": self.low_queue_at_end,
            "low_deliveries_sent_during_run": self.low_sent_during,
            "wall_seconds": round(self.seconds, 1),
        }


def seed(bench: BenchStack, plan: Plan) -> tuple[str, list[str]]:
    user = "password-reset"
    bench.add_devices(user, 1, channel="in_app")
    users = [f"reader-{index:04d}" for index in range(plan.users)]
    for reader in users:
        bench.add_devices(reader, 1, channel="in_app")
    return user, users


def post_flood(bench: BenchStack, plan: Plan, users: list[str]) -> list[str]:
    """The flood's notifications, each to `flood_recipients` users in turn, posted from several threads."""
    ids: list[str] = []
    lock = threading.Lock()
    per_thread = [list(range(t, plan.flood_notifications, plan.posting_threads)) for t in range(plan.posting_threads)]

    def post(indexes: list[int]) -> None:
        for index in indexes:
            start = index * plan.flood_recipients % len(users)
            recipients = [users[(start + k) % len(users)] for k in range(plan.flood_recipients)]
            notification_id = bench.send(recipients, "low", title="Newsletter")
            with lock:
                ids.append(notification_id)

    threads = [threading.Thread(target=post, args=(indexes,)) for indexes in per_thread]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return ids


def high_until_sent(bench: BenchStack, hops: HopClock, user: str) -> Sample:
    """One high notification, polled over HTTP until its delivery is sent; then its hops from the records."""
    posted = time.time()
    notification_id = bench.send([user], "high", title="Sign-in code")
    deadline = time.monotonic() + 600
    while True:
        status = bench.http.get(f"{bench.stack.api_url}/notifications/{notification_id}", timeout=30).json()
        deliveries = status.get("deliveries") or []
        if deliveries and deliveries[0]["status"] == "sent":
            break
        if time.monotonic() > deadline:
            raise BenchError(f"high notification {notification_id} not sent within 600 s: {status}")
        time.sleep(POLL_EVERY)
    accepted = _epoch(status["accepted_at"])
    sent = _epoch(deliveries[0]["sent_at"])
    fanned = _wait_for(lambda: hops.first("FanoutHighFunction", notification_id), notification_id)
    delivered = _wait_for(lambda: hops.first("DeliverHighFunction", notification_id), notification_id)
    (fanout, intake_sent, intake_received), (deliver, queue_sent, queue_received) = fanned, delivered
    return Sample(
        notification_id,
        {
            "api": accepted - posted,
            "intake": fanout.started - intake_sent,
            "intake-sqs": intake_received - intake_sent,
            "queue-sqs": queue_received - queue_sent,
            "fan-out": queue_sent - fanout.started,
            "queue": deliver.started - queue_sent,
            "deliver": sent - deliver.started,
        },
        accepted_to_sent=sent - accepted,
        post_to_sent=sent - posted,
    )


def _wait_for(find: Any, notification_id: str) -> tuple[Handled, float, float]:
    # The status says sent just before the invocation returns and is recorded.
    for _ in range(200):
        found = find()
        if found is not None:
            return found  # type: ignore[no-any-return]
        time.sleep(0.01)
    raise BenchError(f"no invocation recorded for {notification_id}")


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def measure_run(bench: BenchStack, hops: HopClock, name: str, user: str, plan: Plan) -> Run:
    run = Run(name)
    run.low_intake_at_start = bench.queue_depth("LowIntakeQueue")
    run.low_queue_at_start = bench.queue_depth("LowQueue")
    low_before = bench.deleted("LowQueue")
    started = time.perf_counter()
    for _ in range(plan.highs):
        run.samples.append(high_until_sent(bench, hops, user))
    run.seconds = time.perf_counter() - started
    run.low_queue_at_end = bench.queue_depth("LowQueue")
    run.low_sent_during = bench.deleted("LowQueue") - low_before
    return run


def measure(plan: Plan, backend: Backend, precedence: bool = True) -> tuple[list[Run], str, float, dict[str, Any]]:
    with running_stack(backend=backend) as bench:
        bench.stack.precedence.enabled = precedence
        hops = HopClock(bench)
        user, users = seed(bench, plan)
        for _ in range(3):  # first invocations build what a container keeps: not what is measured
            high_until_sent(bench, hops, user)
        progress(f"idle: {plan.highs} high-priority notifications, each polled until sent")
        idle = measure_run(bench, hops, "idle", user, plan)
        progress(
            f"flood: {plan.flood_notifications} low notifications x {plan.flood_recipients} recipients from "
            f"{plan.posting_threads} threads"
        )
        started = time.perf_counter()
        post_flood(bench, plan, users)
        posting = time.perf_counter() - started
        progress(f"flood posted in {posting:.1f} s; {plan.highs} highs behind it")
        flood = measure_run(bench, hops, "flood", user, plan)
        yields = {lane: vars(bench.stack.precedence.yields(rank)) for lane, rank in (("normal", 1), ("low", 2))}
        return [idle, flood], bench.emulator, posting, yields


def hops_table(runs: list[Run]) -> Table:
    return Table(
        "A high notification's hops, p50 / p99 (s)",
        ("run", "n", *HOPS, "accepted-to-sent", "post-to-sent p99"),
        [
            (
                run.name,
                len(run.samples),
                *(f"{run.p(50, hop):.3f} / {run.p(99, hop):.3f}" for hop in HOPS),
                f"{run.p(50):.3f} / {run.p(99):.3f}",
                f"{percentile([s.post_to_sent for s in run.samples], 99):.3f}",
            )
            for run in runs
        ],
    )


def flood_table(runs: list[Run]) -> Table:
    return Table(
        "The low lane while the highs ran",
        ("run", "low intake depth at start", "low queue depth start/end", "low sent during", "seconds"),
        [
            (
                run.name,
                run.low_intake_at_start,
                f"{run.low_queue_at_start} / {run.low_queue_at_end}",
                run.low_sent_during,
                f"{run.seconds:.1f}",
            )
            for run in runs
        ],
    )


# The hops are read from millisecond timestamps (SQS's, and a delivery's sent_at): a time below that is 0 ms
# to within the reading, and a ratio to it says nothing. The in-app `deliver` hop reads 0 to 1 ms since its
# sent_at is the inbox item's delivered_at, written by the invocation's first call.
RESOLUTION_S = 0.001


def ratio(flood: float, idle: float) -> float:
    """flood / idle, with times below the timestamps' resolution read as that resolution (never a division by 0)."""
    return max(flood, RESOLUTION_S) / max(idle, RESOLUTION_S)


def run(scale: Scale, backend: Backend | None = None, precedence: bool = True) -> Report:
    plan = PLANS[scale]
    backend = backend or Backend.STACK
    report = Report("priority", scale)
    runs, emulator, posting, yields = measure(plan, backend, precedence)
    idle, flood = runs
    report.emulator = emulator
    report.tables += [hops_table(runs), flood_table(runs)]
    total_ratio = ratio(flood.p(99), idle.p(99))
    queue_ratios = {hop: ratio(flood.p(50, hop), idle.p(50, hop)) for hop in QUEUES}
    report.budgets = [
        Budget(f"high p99 under the flood vs idle p99 ({backend.value})", total_ratio, FLOOD_BUDGET),
        *(
            Budget(
                f"high median wait at the {'intake' if hop == 'intake' else 'high'} queue, flood vs idle",
                r,
                QUEUE_WAIT_BUDGET,
            )
            for hop, r in queue_ratios.items()
        ),
        Budget("idle: slowest high sent after accepted", max(idle.totals()), SENT_WITHIN_S, unit=" s"),
    ]
    report.figures = {
        "plan": vars(plan) | {"flood_deliveries": plan.flood_deliveries},
        "backend": backend.value,
        "runs": {r.name: r.as_json() for r in runs},
        "p99_ratio_flood_to_idle": round(total_ratio, 3),
        "queue_wait_ratio_flood_to_idle": {hop: round(r, 3) for hop, r in queue_ratios.items()},
        "hop_p99_ratio_flood_to_idle": {hop: round(ratio(flood.p(99, hop), idle.p(99, hop)), 3) for hop in HOPS},
        "flood_posting_seconds": round(posting, 1),
        "lane_precedence": precedence,
        "gave_way": {lane: {k: round(v, 2) for k, v in y.items()} for lane, y in yields.items()},
    }
    report.headline = [
        f"{backend.value} ({emulator}, lane precedence {'on' if precedence else 'off'}): high-priority "
        f"accepted-to-sent idle p50 {idle.p(50):.3f} s, p99 "
        f"{idle.p(99):.3f} s (n={len(idle.samples)}); behind {plan.flood_notifications} low notifications x "
        f"{plan.flood_recipients} recipients ({plan.flood_deliveries} deliveries) p50 {flood.p(50):.3f} s, p99 "
        f"{flood.p(99):.3f} s: p99 {total_ratio:.2f}x idle",
        "median wait at the high intake queue "
        f"{idle.p(50, 'intake') * 1000:.0f} -> {flood.p(50, 'intake') * 1000:.0f} ms "
        f"({queue_ratios['intake']:.2f}x), at the high queue {idle.p(50, 'queue') * 1000:.0f} -> "
        f"{flood.p(50, 'queue') * 1000:.0f} ms ({queue_ratios['queue']:.2f}x); the low intake queue held "
        f"{flood.low_intake_at_start} and the low queue {flood.low_queue_at_start} when the highs began",
        "p99 per hop, flood vs idle: "
        + ", ".join(f"{hop} {ratio(flood.p(99, hop), idle.p(99, hop)):.2f}x" for hop in HOPS),
        f"the low lane gave way to a higher one {yields['low']['count']} times "
        f"({yields['low']['seconds']:.1f} s in all, {yields['low']['capped']} at the cap)",
    ]
    report.notes += [
        "Each high notification is sent after the previous one is `sent` (polled every 50 ms over HTTP), so a run "
        "measures one notification at a time through an otherwise busy stack.",
        "Hops come from the stack's records: the API's accepted_at, each SQS record's SentTimestamp and the start of "
        "the invocation that handled it, and the delivery's sent_at. 'api' includes the POST's wait for the local "
        "API (one request at a time, as one Lambda container).",
        "Each priority has its own intake queue, fan-out mapping and function, priority queue and deliver function; "
        "what the high path still shares with the flood on one machine is the CPU and the emulator (moto scans a "
        "whole queue on every SQS call: the low queue is thousands deep).",
    ]
    return report


def options(parser: argparse.ArgumentParser) -> None:
    backend_option(parser)
    parser.add_argument(
        "--no-precedence",
        dest="precedence",
        action="store_false",
        help="switch the local stack's lane precedence off (lower lanes no longer give way to higher ones)",
    )


if __name__ == "__main__":
    sys.exit(main("priority", lambda a: run(a.scale, a.backend, a.precedence), __doc__ or "", options))
