"""Throughput and latency: sustained deliveries per second and accepted-to-sent p50/p95/p99 at a fixed
offered load on the local stack, beside the raw ceiling of the same SQS endpoint measured in the same
run (SendMessageBatch, ReceiveMessage and DeleteMessageBatch for as many queue hops as Herald made),
so the figure reads as a fraction of what the emulator allows.

`python -m bench.throughput [--scale tiny|full] [--backend ...]`. No budget: figures to read.

`--backend environment` uses the AWS_ENDPOINT_URL* variables of the environment instead of an
embedded moto server: the hook for running the same benchmark against LocalStack (SQS, SNS and SES
there, DynamoDB on moto), whose setup lives with the LocalStack leg.
"""

from __future__ import annotations

import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.calls import Origin
from bench.figures import percentile
from bench.report import BenchError, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, backend_option, running_stack

PRIORITY = "normal"
CLIENTS = 8  # concurrent HTTP clients offering the load


@dataclass(frozen=True)
class Load:
    rate: float  # notifications per second offered
    devices: int  # in-app devices per recipient
    seconds: float  # how long the load is offered

    @property
    def notifications(self) -> int:
        return int(self.rate * self.seconds)

    @property
    def deliveries(self) -> int:
        return self.notifications * self.devices


LOADS = {
    Scale.TINY: Load(rate=5, devices=2, seconds=1),
    Scale.FULL: Load(rate=6, devices=5, seconds=30),
}


def offer(bench: BenchStack, load: Load, users: list[str]) -> list[str]:
    """POSTs notifications on a fixed schedule (the load's rate, whatever the answers' latency: an
    open loop, from a few client threads), round-robin over users; returns their ids."""
    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=CLIENTS) as clients:
        sent = []
        for index in range(load.notifications):
            time.sleep(max(started + index / load.rate - time.monotonic(), 0))
            sent.append(clients.submit(bench.send, [users[index % len(users)]], PRIORITY))
        return [future.result() for future in sent]


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


def deliver_concurrency(bench: BenchStack, since_invocations: int) -> dict[str, float]:
    """How a deliver batch spends its time: records per invocation, ms per invocation, and that time
    over the sum of its records' AWS call times (1.0: one record after another; 1/k: k at once)."""
    function = bench.deliver_function(PRIORITY).name
    invocations = [i for i in bench.clock.snapshot()[since_invocations:] if i.function == function and i.records]
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


def run(scale: Scale, backend: Backend = Backend.EMBEDDED) -> Report:
    load = LOADS[scale]
    report = Report("throughput", scale)
    with running_stack(backend=backend) as bench:
        report.emulator = bench.emulator
        users = [f"reader-{index}" for index in range(10)]
        for user in users:
            bench.add_devices(user, load.devices, channel="in_app")
        bench.reset()
        progress(f"offering {load.rate:g} notifications/s x {load.devices} devices for {load.seconds:g} s")
        started = time.perf_counter()
        ids = offer(bench, load, users)
        offered_seconds = time.perf_counter() - started
        queue = {"high": "HighQueue", "normal": "NormalQueue", "low": "LowQueue"}[PRIORITY]
        bench.wait_until(
            lambda: bench.deleted(queue) >= load.deliveries, timeout=600 + load.deliveries, what="the load to drain"
        )
        outcomes = bench.outcomes(ids)
        concurrency = deliver_concurrency(bench, 0)
        progress("raw ceiling of the same SQS endpoint")
        hops = load.notifications + load.deliveries  # intake hop per notification, priority hop per delivery
        ceiling = raw_ceiling(hops)
        endpoint = bench.stack.endpoint
    latencies = [o.seconds_to_sent for o in outcomes if o.seconds_to_sent is not None]
    if len(latencies) != load.deliveries:
        raise BenchError(f"{load.deliveries - len(latencies)} deliveries not sent")
    first_accepted = min(o.accepted_at for o in outcomes)
    last_sent = max(o.sent_at for o in outcomes if o.sent_at is not None)
    span = (last_sent - first_accepted).total_seconds()
    sustained = load.deliveries / span
    ceiling_deliveries = load.deliveries / (hops / ceiling["hops_per_s"])
    report.tables.append(
        Table(
            f"Offered {load.rate:g} notifications/s x {load.devices} in-app devices ({PRIORITY} priority), "
            f"{load.notifications} notifications",
            ("figure", "value"),
            [
                ("offered deliveries/s", f"{load.deliveries / offered_seconds:.1f}"),
                ("sustained deliveries/s (first accepted to last sent)", f"{sustained:.1f}"),
                (
                    "accepted-to-sent p50 / p95 / p99 (s)",
                    " / ".join(f"{percentile(latencies, q):.3f}" for q in (50, 95, 99)),
                ),
                ("raw SQS ceiling, same endpoint: SendMessageBatch msgs/s", f"{ceiling['send_per_s']:.0f}"),
                ("raw SQS ceiling: receive+delete msgs/s", f"{ceiling['receive_delete_per_s']:.0f}"),
                ("raw ceiling for Herald's hops, as deliveries/s", f"{ceiling_deliveries:.0f}"),
                ("sustained / raw ceiling", f"{sustained / ceiling_deliveries:.2f}"),
                ("deliver: records per invocation", f"{concurrency['records_per_invocation']:.1f}"),
                ("deliver: ms per invocation", f"{concurrency['ms_per_invocation']:.1f}"),
                ("deliver: AWS call ms per record", f"{concurrency['aws_call_ms_per_record']:.1f}"),
                (
                    "deliver: invocation time / its records' call times",
                    f"{concurrency['invocation_over_sequential_calls']:.2f}",
                ),
            ],
        )
    )
    report.figures = {
        "backend": backend.value,
        "priority": PRIORITY,
        "load": vars(load) | {"notifications": load.notifications, "deliveries": load.deliveries},
        "offered_deliveries_per_s": round(load.deliveries / offered_seconds, 2),
        "sustained_deliveries_per_s": round(sustained, 2),
        "p50_s": round(percentile(latencies, 50), 4),
        "p95_s": round(percentile(latencies, 95), 4),
        "p99_s": round(percentile(latencies, 99), 4),
        "raw_ceiling": {k: round(v, 1) for k, v in ceiling.items()},
        "raw_ceiling_deliveries_per_s": round(ceiling_deliveries, 1),
        "fraction_of_ceiling": round(sustained / ceiling_deliveries, 3),
        "deliver": {k: round(v, 3) for k, v in concurrency.items()},
        "median_latency_s": round(statistics.median(latencies), 4),
    }
    report.headline += [
        f"offered {load.deliveries / offered_seconds:.0f} deliveries/s ({load.rate:g} notifications/s x {load.devices} "
        f"devices, {PRIORITY} priority): sustained {sustained:.0f}/s; "
        f"accepted-to-sent p50 {percentile(latencies, 50):.2f} s, "
        f"p95 {percentile(latencies, 95):.2f} s, p99 {percentile(latencies, 99):.2f} s",
        f"raw ceiling of the same SQS endpoint for Herald's hops: {ceiling_deliveries:.0f} deliveries/s; "
        f"Herald sustained {sustained / ceiling_deliveries:.2f} of it at this load",
        f"deliver: {concurrency['records_per_invocation']:.1f} records per invocation; an invocation took "
        f"{concurrency['invocation_over_sequential_calls']:.2f}x the sum of its records' AWS call times "
        "(1.0 = one record after another)",
    ]
    report.notes += [
        f"AWS endpoint: {endpoint}.",
        f"{PRIORITY} priority waits up to its mapping's batching window (template.yaml) before a batch is handed "
        "to the deliver function: latency includes it.",
        "Raw ceiling: one client pushing the same number of messages through send, receive and delete on a "
        "shallow queue of the same endpoint; Herald's hops are one intake message per notification and one "
        "priority message per delivery.",
        "'invocation time / its records' call times': 1.0 when a batch's records are delivered one after "
        "another; about 1/k when k records' provider calls overlap.",
    ]
    return report


if __name__ == "__main__":
    sys.exit(main("throughput", lambda a: run(a.scale, a.backend or Backend.EMBEDDED), __doc__ or "", backend_option))
