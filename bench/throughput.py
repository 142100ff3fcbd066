"""Throughput: the local stack's ceiling. The offered load ramps up in steps (notifications per second
on a fixed schedule, from client processes of their own); each step prints offered against accepted
notifications/s, the deliveries/s sustained and accepted-to-sent p50/p95; the ceiling is the highest
step where the API accepted what was offered and the deliveries kept up. Beside it, the raw pace of
the same SQS endpoint, so the figures read as a fraction of what the emulator allows.

`python -m bench.throughput [--scale tiny|full] [--backend ...] [--devices N] [--rates N ...]`.
Budget (issue 9): at least 30 notifications/s accepted at the ceiling, a step counting only when the
pollers kept up with its deliveries. The load: each notification to one user with one in-app device.

By default (`--backend stack`) the stack starts its own moto as `make run` does. `--backend
environment` uses the AWS_ENDPOINT_URL* variables of the environment instead: the hook for running
the same benchmark against LocalStack (SQS, SNS and SES there, DynamoDB on moto), whose setup lives
with the LocalStack leg.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bench.calls import Origin
from bench.figures import percentile
from bench.floor import Shape
from bench.report import BenchError, Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, Sent, backend_option, running_stack

PRIORITY = "normal"
QUEUE = {"high": "HighQueue", "normal": "NormalQueue", "low": "LowQueue"}[PRIORITY]
PROCESSES = 2  # client processes offering the load (their own interpreters, as a load tool would be)
THREADS = 24  # open-loop senders per client process: enough that a slow answer never delays the schedule
BUDGET = 30.0  # notifications/s accepted, at least (issue 9)
KEEPS_UP = 0.9  # a step keeps up when accepted and sustained reach this fraction of what was offered


@dataclass(frozen=True)
class Ramp:
    rates: tuple[float, ...]  # notifications per second offered, step by step
    seconds: float  # how long each step offers its rate
    devices: int  # in-app devices per recipient: deliveries per notification
    drain: float  # how long a step's deliveries may take to be sent after its offer ends

    def notifications(self, rate: float) -> int:
        return round(rate * self.seconds)


RAMPS = {
    Scale.TINY: Ramp(rates=(4, 8), seconds=1, devices=2, drain=60),
    # Up to the usage plan's 50 requests/s (template.yaml): past it API Gateway answers 429 by design.
    # Issue 9's load: 30 notifications/s accepted and the pollers keeping up with the deliveries those
    # make. A notification here goes to one user with one in-app device: one delivery each, through
    # every hop (intake, fan-out, topic, priority queue, deliver). --devices 3 weighs the deliveries.
    Scale.FULL: Ramp(rates=(10, 20, 30, 40, 50), seconds=15, devices=1, drain=120),
}


@dataclass(frozen=True)
class Answer:
    """One POST /notifications, as its client saw it (wall-clock seconds)."""

    sent_at: float
    answered_at: float
    status: int
    notification_id: str | None


def offer_share(url: str, api_key: str, schedule: list[tuple[float, str]], priority: str) -> list[Answer]:
    """Runs in a client process: POSTs one notification per (when, user) of `schedule` at that wall
    time, whatever the answers' latency (an open loop); a 429 is recorded, not retried."""
    import threading

    import requests

    local = threading.local()

    def post(user: str) -> Answer:
        session = getattr(local, "session", None)
        if session is None:
            session = local.session = requests.Session()
            session.headers["x-api-key"] = api_key
        body = {"recipients": [user], "title": "Bench", "body": "throughput", "priority": priority}
        sent_at = time.time()
        try:
            response = session.post(f"{url}/notifications", json=body, timeout=30)
        except requests.RequestException:
            return Answer(sent_at, time.time(), 0, None)
        identifier = response.json().get("notification_id") if response.status_code == 202 else None
        return Answer(sent_at, time.time(), response.status_code, identifier)

    with ThreadPoolExecutor(max_workers=THREADS) as senders:
        futures = []
        for when, user in schedule:
            time.sleep(max(when - time.time(), 0))
            futures.append(senders.submit(post, user))
        return [future.result() for future in futures]


def _ready() -> bool:
    import requests  # noqa: F401  (the import is what warms the client process)

    return True


@dataclass(frozen=True)
class Step:
    rate: float
    offered: int
    answers: list[Answer]
    latencies: list[float]  # accepted to sent, per delivery sent
    accepted_span: float  # first to last accepted_at of the step's notifications (status store)
    sent_span: float  # first to last sent_at of its deliveries
    deliveries_expected: int
    drained: bool

    @property
    def accepted(self) -> int:
        return sum(a.status == 202 for a in self.answers)

    @property
    def throttled(self) -> int:
        return sum(a.status == 429 for a in self.answers)

    @property
    def accepted_per_s(self) -> float:
        """Accepted notifications over the time from the first request sent to the last answer (plus
        one interval of the schedule: n requests at rate r span (n - 1) / r)."""
        if not self.answers:
            return 0.0
        span = max(a.answered_at for a in self.answers) - min(a.sent_at for a in self.answers)
        return self.accepted / (span + 1 / self.rate)

    @property
    def offered_per_s(self) -> float:
        return self.rate

    @property
    def deliveries_offered_per_s(self) -> float:
        """Deliveries the accepted notifications called for, per second of accepting them."""
        return self.deliveries_expected / (self.accepted_span + 1 / self.rate)

    @property
    def sustained_per_s(self) -> float:
        """Deliveries sent, per second of sending them (first to last sent)."""
        return len(self.latencies) / (self.sent_span + 1 / self.rate)

    @property
    def accepts(self) -> bool:
        return self.accepted_per_s >= KEEPS_UP * self.offered_per_s and self.accepted == self.offered

    @property
    def delivers(self) -> bool:
        return self.drained and self.sustained_per_s >= KEEPS_UP * self.deliveries_offered_per_s

    @property
    def keeps_up(self) -> bool:
        return self.accepts and self.delivers

    def answer_seconds(self, q: float) -> float:
        return percentile([a.answered_at - a.sent_at for a in self.answers], q)


def run_step(bench: BenchStack, clients: ProcessPoolExecutor, ramp: Ramp, rate: float, users: list[str]) -> Step:
    count = ramp.notifications(rate)
    start = time.time() + 0.5  # every client process is waiting for it by then
    schedule = [(start + index / rate, users[index % len(users)]) for index in range(count)]
    shares = [schedule[k::PROCESSES] for k in range(PROCESSES)]
    url, key = bench.stack.api_url, bench.stack.api_key
    deleted_before = bench.deleted(QUEUE)  # the previous step drained: nothing of this one yet
    answers = [
        a for future in [clients.submit(offer_share, url, key, s, PRIORITY) for s in shares] for a in future.result()
    ]
    ids = [a.notification_id for a in answers if a.notification_id]
    expected = len(ids) * Shape(1, ramp.devices).messages  # a recipient's devices travel in one message
    target = deleted_before + expected
    drained = True
    try:
        bench.wait_until(lambda: bench.deleted(QUEUE) >= target, timeout=ramp.drain, what="the step's deliveries")
    except BenchError:
        drained = False
    accepted_at, outcomes = scanned_outcomes(bench, ids)
    sent = [o for o in outcomes if o.sent_at is not None]
    latencies = [o.seconds_to_sent for o in sent if o.seconds_to_sent is not None]
    sent_at = [o.sent_at for o in sent if o.sent_at is not None]
    return Step(
        rate=rate,
        offered=count,
        answers=answers,
        latencies=latencies,
        accepted_span=(max(accepted_at) - min(accepted_at)).total_seconds() if accepted_at else 0.0,
        sent_span=(max(sent_at) - min(sent_at)).total_seconds() if sent_at else 0.0,
        deliveries_expected=expected,
        drained=drained and len(latencies) == expected,
    )


def scanned_outcomes(bench: BenchStack, notification_ids: list[str]) -> tuple[list[datetime], list[Sent]]:
    """When these notifications were accepted, and their deliveries, from one scan of the status table and one
    of the inbox table (an in-app delivery sent on its first try is recorded by its inbox item alone). moto
    answers a Query by sorting the whole table: one per notification would take minutes here."""
    import boto3
    from botocore.config import Config

    from herald.adapters.status import RECIPIENT_PREFIX, SUMMARY_SK
    from herald.adapters.status_views import recipient_records

    # A client of its own: pages of a large table take moto longer than Herald's clients wait
    dynamodb = boto3.session.Session().client("dynamodb", config=Config(read_timeout=300, retries={"max_attempts": 5}))
    environment = bench.function("api.").environment
    wanted = set(notification_ids)
    accepted: dict[str, datetime] = {}
    # Per notification, per device: its status and when it was sent
    deliveries: dict[str, dict[str, tuple[str, datetime | None]]] = {}
    for item in _scanned(dynamodb, environment["STATUS_TABLE"]):
        notification_id, sk = item["notification_id"]["S"], item["sk"]["S"]
        if notification_id not in wanted:
            continue
        if sk == SUMMARY_SK:
            accepted[notification_id] = datetime.fromisoformat(item["accepted_at"]["S"])
        elif sk.startswith(RECIPIENT_PREFIX):  # a recipient's deliveries, one entry per device
            for record in recipient_records(item):
                key = f"{record.user_id}#{record.device_id}"
                deliveries.setdefault(notification_id, {})[key] = (record.status.value, record.sent_at)
    for item in _scanned(dynamodb, environment["INBOX_TABLE"]):
        shown = json.loads(item["item"]["S"])
        notification_id = shown["notification_id"]
        if notification_id in wanted and "delivered_at" in item:  # the inbox item is the record: sent
            sent_at = datetime.fromtimestamp(int(item["delivered_at"]["N"]) / 1000, tz=UTC)
            key = f"{item['user_id']['S']}#{shown['device_id']}"
            deliveries.setdefault(notification_id, {})[key] = ("sent", sent_at)
    if set(accepted) != wanted:
        raise BenchError(f"{len(wanted - set(accepted))} accepted notifications have no status")
    outcomes = [
        Sent(notification_id, status, accepted[notification_id], sent_at)
        for notification_id in notification_ids
        for status, sent_at in deliveries.get(notification_id, {}).values()
    ]
    return list(accepted.values()), outcomes


def _scanned(dynamodb: Any, table: str) -> Iterator[dict[str, Any]]:
    pages = dynamodb.get_paginator("scan").paginate(
        TableName=table, ConsistentRead=True, PaginationConfig={"PageSize": 1000}
    )
    for page in pages:
        yield from page.get("Items", [])


def raw_ceiling(messages: int) -> dict[str, float]:
    """The SQS endpoint's own pace for `messages` message hops, one client, batches of 10, on a
    fresh queue kept as shallow as Herald's (each batch received and deleted right after it is sent)."""
    from herald.adapters.clients import client

    sqs = client("sqs")
    url = sqs.create_queue(QueueName=f"bench-ceiling-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    body = "x" * 600  # about the size of a delivery job
    sent = received = 0
    send_s = receive_s = 0.0
    try:
        while sent < messages:
            count = min(10, messages - sent)
            started = time.perf_counter()
            sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(i), "MessageBody": body} for i in range(count)])
            send_s += time.perf_counter() - started
            sent += count
            started = time.perf_counter()
            while received < sent:
                got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
                if got:
                    sqs.delete_message_batch(
                        QueueUrl=url,
                        Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)],
                    )
                received += len(got)
            receive_s += time.perf_counter() - started
    finally:
        sqs.delete_queue(QueueUrl=url)
    return {
        "messages": messages,
        "send_per_s": messages / send_s,
        "receive_delete_per_s": messages / receive_s,
        "hops_per_s": messages / (send_s + receive_s),
    }


def deliver_concurrency(bench: BenchStack) -> dict[str, float]:
    """How a deliver batch spends its time: records per invocation, ms per invocation, and that time
    over the sum of its records' AWS call times (1.0: one record after another; 1/k: k at once)."""
    function = bench.deliver_function(PRIORITY).name
    invocations = [i for i in bench.clock.snapshot() if i.function == function and i.records]
    tally = bench.counter.snapshot()
    call_seconds = sum(
        s for key, s in tally.seconds.items() if key.origin == Origin.HERALD and key.function == "deliver"
    )
    records = sum(i.records for i in invocations)
    if not invocations or not records:
        raise BenchError("no deliver invocation measured")
    invocation_seconds = sum(i.seconds for i in invocations)
    return {
        "invocations": len(invocations),
        "records_per_invocation": records / len(invocations),
        "ms_per_invocation": invocation_seconds / len(invocations) * 1000,
        "aws_call_ms_per_record": call_seconds / records * 1000,
        "invocation_over_sequential_calls": invocation_seconds / call_seconds if call_seconds else 0.0,
    }


def most_at_once(bench: BenchStack, handler_prefix: str) -> int:
    """The most invocations of a function that overlapped in time, from its journal."""
    journal = list(bench.function(handler_prefix).invocations)
    edges = sorted([(i.started, 1) for i in journal] + [(i.at, -1) for i in journal])
    running = peak = 0
    for _, change in edges:
        running += change
        peak = max(peak, running)
    return peak


def step_row(step: Step) -> tuple[object, ...]:
    p50 = percentile(step.latencies, 50) if step.latencies else float("nan")
    p95 = percentile(step.latencies, 95) if step.latencies else float("nan")
    return (
        f"{step.offered_per_s:g}",
        f"{step.accepted_per_s:.1f}",
        f"{step.accepted}/{step.offered}" + (f" ({step.throttled} x 429)" if step.throttled else ""),
        f"{step.answer_seconds(95):.3f}",
        f"{step.deliveries_offered_per_s:.1f}",
        f"{step.sustained_per_s:.1f}" + ("" if step.drained else " (not drained)"),
        f"{p50:.2f} / {p95:.2f}",
        "yes" if step.keeps_up else "NO",
    )


def run(
    scale: Scale, backend: Backend = Backend.STACK, devices: int | None = None, rates: list[float] | None = None
) -> Report:
    ramp = RAMPS[scale]
    if devices is not None:
        ramp = dataclasses.replace(ramp, devices=devices)
    if rates:
        ramp = dataclasses.replace(ramp, rates=tuple(rates))
    report = Report("throughput", scale)
    steps: list[Step] = []
    spawn = multiprocessing.get_context("spawn")
    with (
        running_stack(backend=backend) as bench,
        ProcessPoolExecutor(max_workers=PROCESSES, mp_context=spawn) as clients,
    ):
        report.emulator = bench.emulator
        users = [f"reader-{index}" for index in range(20)]
        for user in users:
            bench.add_devices(user, ramp.devices, channel="in_app")
        for ready in [clients.submit(_ready) for _ in range(PROCESSES)]:
            ready.result()
        # One notification through the whole path first: cold starts are not what the ramp measures
        bench.send([users[0]], PRIORITY)
        warm = Shape(1, ramp.devices).messages
        bench.wait_until(lambda: bench.deleted(QUEUE) >= warm, timeout=ramp.drain, what="the warm-up")
        bench.reset()
        for rate in ramp.rates:
            progress(f"offering {rate:g} notifications/s x {ramp.devices} devices for {ramp.seconds:g} s")
            step = run_step(bench, clients, ramp, rate, users)
            steps.append(step)
            progress(
                f"  accepted {step.accepted_per_s:.1f}/s, sustained {step.sustained_per_s:.1f} deliveries/s, "
                f"{'keeps up' if step.keeps_up else 'falls behind'}"
            )
            if not step.drained or (not step.keeps_up and rate >= BUDGET):
                break  # past the ceiling, and past the budget's rate: higher steps would only measure backlogs
        concurrency = deliver_concurrency(bench)
        api_containers = len(bench.function("api.").containers)
        api_at_once = most_at_once(bench, "api.")
        ceiling_step = max((s for s in steps if s.keeps_up), key=lambda s: s.rate, default=None)
        # The API alone: the highest step whose requests were all accepted in stride, deliveries aside
        accepting_step = max((s for s in steps if s.accepts), key=lambda s: s.rate, default=None)
        hops = sum(s.accepted * (1 + ramp.devices) for s in steps[-1:])  # intake hop + one per delivery
        progress("raw pace of the same SQS endpoint")
        raw = raw_ceiling(max(hops, 10))
        endpoint = bench.stack.endpoint
    accepted_ceiling = ceiling_step.accepted_per_s if ceiling_step else 0.0
    report.tables.append(
        Table(
            f"Ramp: {ramp.seconds:g} s per step, 1 recipient x {ramp.devices} in-app devices per notification "
            f"({PRIORITY} priority), from {PROCESSES} client processes",
            (
                "offered n/s",
                "accepted n/s",
                "accepted",
                "answer p95 s",
                "deliveries due/s",
                "sustained deliveries/s",
                "accepted-to-sent p50 / p95 s",
                "keeps up",
            ),
            [step_row(step) for step in steps],
        )
    )
    report.tables.append(
        Table(
            "Around it",
            ("figure", "value"),
            [
                (
                    "ceiling: highest step that keeps up (notifications/s offered)",
                    f"{ceiling_step.rate:g}" if ceiling_step else "none",
                ),
                (
                    "API alone: highest step accepted in stride, accepted n/s there",
                    f"{accepting_step.rate:g}, {accepting_step.accepted_per_s:.1f}" if accepting_step else "none",
                ),
                ("most accepted n/s in any step", f"{max(s.accepted_per_s for s in steps):.1f}"),
                ("most deliveries/s sustained in any step", f"{max(s.sustained_per_s for s in steps):.1f}"),
                ("API containers started / most requests handled at once", f"{api_containers} / {api_at_once}"),
                ("raw SQS pace, same endpoint: SendMessageBatch msgs/s", f"{raw['send_per_s']:.0f}"),
                ("raw SQS pace: receive+delete msgs/s", f"{raw['receive_delete_per_s']:.0f}"),
                ("deliver: records per invocation", f"{concurrency['records_per_invocation']:.1f}"),
                ("deliver: ms per invocation", f"{concurrency['ms_per_invocation']:.1f}"),
                (
                    "deliver: invocation time / its records' call times",
                    f"{concurrency['invocation_over_sequential_calls']:.2f}",
                ),
            ],
        )
    )
    report.budgets.append(
        Budget("notifications/s accepted at the ceiling", accepted_ceiling, BUDGET, unit="/s", at_least=True)
    )
    report.figures = {
        "backend": backend.value,
        "priority": PRIORITY,
        "ramp": {"rates": list(ramp.rates), "seconds": ramp.seconds, "devices": ramp.devices},
        "steps": [
            {
                "offered_per_s": s.offered_per_s,
                "accepted_per_s": round(s.accepted_per_s, 2),
                "accepted": s.accepted,
                "offered": s.offered,
                "throttled": s.throttled,
                "answer_p95_s": round(s.answer_seconds(95), 4),
                "deliveries_due_per_s": round(s.deliveries_offered_per_s, 2),
                "sustained_deliveries_per_s": round(s.sustained_per_s, 2),
                "p50_s": round(percentile(s.latencies, 50), 4) if s.latencies else None,
                "p95_s": round(percentile(s.latencies, 95), 4) if s.latencies else None,
                "drained": s.drained,
                "keeps_up": s.keeps_up,
            }
            for s in steps
        ],
        "ceiling_offered_per_s": ceiling_step.rate if ceiling_step else None,
        "accepting_offered_per_s": accepting_step.rate if accepting_step else None,
        "accepting_accepted_per_s": round(accepting_step.accepted_per_s, 2) if accepting_step else None,
        "most_accepted_per_s": round(max(s.accepted_per_s for s in steps), 2),
        "most_sustained_deliveries_per_s": round(max(s.sustained_per_s for s in steps), 2),
        "ceiling_accepted_per_s": round(accepted_ceiling, 2),
        "ceiling_sustained_deliveries_per_s": round(ceiling_step.sustained_per_s, 2) if ceiling_step else None,
        "ceiling_p95_s": round(percentile(ceiling_step.latencies, 95), 4) if ceiling_step else None,
        "api_containers": api_containers,
        "api_most_at_once": api_at_once,
        "raw_ceiling": {k: round(v, 1) for k, v in raw.items()},
        "deliver": {k: round(v, 3) for k, v in concurrency.items()},
    }
    if ceiling_step:
        report.headline.append(
            f"ceiling {ceiling_step.rate:g} notifications/s offered: {accepted_ceiling:.1f} accepted/s, "
            f"{ceiling_step.sustained_per_s:.0f} deliveries/s sustained ({ramp.devices} in-app devices each, "
            f"{PRIORITY} priority), accepted-to-sent p95 {percentile(ceiling_step.latencies, 95):.2f} s"
        )
    else:
        report.headline.append("no step kept up (accepted in stride and deliveries sent as fast as due)")
    if accepting_step and accepting_step is not ceiling_step:
        report.headline.append(
            f"the API alone accepted in stride up to {accepting_step.rate:g} notifications/s offered "
            f"({accepting_step.accepted_per_s:.1f}/s); most accepted in a step "
            f"{max(s.accepted_per_s for s in steps):.1f}/s, most deliveries sustained "
            f"{max(s.sustained_per_s for s in steps):.1f}/s"
        )
    beyond = [s for s in steps if not s.keeps_up]
    if beyond:
        first = beyond[0]
        report.headline.append(
            f"at {first.rate:g} offered: {first.accepted_per_s:.1f} accepted/s, {first.sustained_per_s:.0f} "
            f"deliveries/s sustained of {first.deliveries_offered_per_s:.0f} due"
            + ("" if first.drained else f", not drained within {ramp.drain:g} s")
        )
    report.headline.append(f"API: {api_containers} containers started, at most {api_at_once} requests handled at once")
    report.notes += [
        f"AWS endpoint: {endpoint}.",
        "Offered: each step's notifications are POSTed on a fixed schedule (an open loop) from "
        f"{PROCESSES} client processes of {THREADS} threads; a 429 (usage plan) is counted, not retried.",
        "accepted n/s: 202 answers over the time from the step's first request to its last answer. "
        "deliveries due/s: the accepted notifications' deliveries over the span of their accepted_at; "
        "sustained: deliveries sent over the span of their sent_at.",
        f"A step keeps up when every request was accepted at >= {KEEPS_UP:g}x the offered rate, and its "
        f"deliveries were all sent within {ramp.drain:g} s at >= {KEEPS_UP:g}x the rate they were due. "
        "Each step drains before the next begins.",
        f"{PRIORITY} priority waits up to its mapping's batching window (template.yaml) before a batch is handed "
        "to the deliver function: latency includes it.",
        "The full ramp stops at 50 notifications/s, the usage plan's rate (template.yaml): past it API "
        "Gateway answers 429 by design.",
    ]
    return report


def options(parser: argparse.ArgumentParser) -> None:
    backend_option(parser)
    parser.add_argument("--devices", type=int, help="in-app devices per notification (default: the scale's)")
    parser.add_argument("--rates", type=float, nargs="+", metavar="N", help="the steps, notifications/s offered")


if __name__ == "__main__":
    sys.exit(
        main(
            "throughput",
            lambda a: run(a.scale, a.backend or Backend.STACK, a.devices, a.rates),
            __doc__ or "",
            options,
        )
    )
