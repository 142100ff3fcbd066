"""Broadcast: one notification to every subscriber of a topic, fanned out a page at a time, at growing sizes.

`python -m bench.broadcast [--scale tiny|full] [--backend ...] [--devices N] [--minutes M]`.
Budgets: fan-out time and AWS calls linear in the devices reached (the marginal cost per device from
half to all of them at most 1.25x that from a tenth to half); the fan-out's peak memory per
invocation flat (at most 1.2x from a tenth of the size to all of it); no fan-out or deliver
invocation over half its timeout; every delivery sent exactly once.

Sizes: a tenth, half and all of N subscribers of one topic, each with one in-app device. N is
`--devices` (100,000 at full scale) or as many as this machine fans out within `--minutes` (10):
the tenth's rate decides, and the output says what was measured and what is extrapolated.
Pages hold at most 200 deliveries here (the template's default is 1,000), fewer when N is small, so
that even the tenth's 16 chains fill their pages: the memory of a default page is measured once
beside them.

The fan-out handler (the low lane's) runs in this process, invoked as its event source mapping
would (up to 10 intake messages a batch, each with a fresh context), one invocation at a time, on
intake messages kept in a queue of the benchmark's own (no poller reads it), and publishes to a
topic without subscribers: what is measured is the fan-out, not the emulator delivering into
queues. Peak memory is Python's (tracemalloc) during a sample of invocations of a second
broadcast to the same topic. Then a smaller broadcast goes through the whole stack over HTTP, to
every device's inbox, and is checked exactly once: one inbox write per delivery, all `sent`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.calls import Origin
from bench.figures import linear_fit
from bench.report import BenchError, Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, backend_option, running_stack

LINEAR_BUDGET = 1.25
MEMORY_BUDGET = 1.2
HALF_TIMEOUT = 0.5
DEFAULT_PAGE = 1000  # the template's FanoutPageDeliveries
TARGET = {Scale.TINY: 160, Scale.FULL: 100_000}
CALIBRATION = {Scale.TINY: 20, Scale.FULL: 2_000}  # a first broadcast, whose pace decides how many fit
DELIVERED = {Scale.TINY: 20, Scale.FULL: 1_000}  # the broadcast that goes through the whole stack
MINUTES = 10.0
SAMPLED_INVOCATIONS = 6  # traced for memory, per size
RESERVED_SECONDS = 120  # of --minutes, for the default page's sample and the broadcast through the stack
LANE = "FanoutLowFunction"


def cpu_seconds() -> float:
    """CPU time spent so far by this process and its children still running (the emulator's process):
    on a shared machine it moves far less with the load than wall time does."""
    import os

    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid():  # the parent pid; utime and stime follow 11 fields later
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Size:
    name: str
    devices: int
    seconds: float = 0.0  # the fan-out invocations' time, summed
    cpu: float = 0.0  # CPU seconds of this process and the emulator's over the same invocations
    calls: int = 0
    calls_by_operation: dict[str, int] = field(default_factory=dict)
    invocations: int = 0
    pages: int = 0
    slowest_invocation: float = 0.0
    peak_bytes: int = 0  # the highest of the sampled invocations

    def as_json(self) -> dict[str, object]:
        return {
            "devices": self.devices,
            "fanout_seconds": round(self.seconds, 2),
            "fanout_cpu_seconds": round(self.cpu, 2),
            "cpu_ms_per_device": round(self.cpu * 1000 / self.devices, 4),
            "ms_per_device": round(self.seconds * 1000 / self.devices, 4),
            "calls": self.calls,
            "calls_per_device": round(self.calls / self.devices, 4),
            "calls_by_operation": self.calls_by_operation,
            "invocations": self.invocations,
            "pages": self.pages,
            "slowest_invocation_s": round(self.slowest_invocation, 2),
            "peak_mib": round(self.peak_bytes / 2**20, 2),
        }


class Population:
    """Users with one in-app device each, and topics made of the first n of them, written straight to the
    tables (the benchmark's own setup, not counted)."""

    def __init__(self, bench: BenchStack):
        from herald.adapters.clients import client

        self._dynamodb = client("dynamodb")
        environment = bench.stack.functions[LANE].environment
        self._devices, self._subscribers = environment["DEVICES_TABLE"], environment["SUBSCRIBERS_TABLE"]
        self.users = 0

    @staticmethod
    def user(index: int) -> str:
        return f"subscriber-{index:07d}"

    def grow(self, users: int) -> None:
        from herald.models.domain import now

        at = now().isoformat()
        items = [
            {
                "user_id": {"S": self.user(i)},
                "device_id": {"S": "web"},
                "channel": {"S": "in_app"},
                "created_at": {"S": at},
                "updated_at": {"S": at},
                "active": {"S": "True"},
            }
            for i in range(self.users, users)
        ]
        self._write(self._devices, items)
        self.users = max(self.users, users)

    def topic(self, name: str, users: int) -> str:
        from herald.adapters.topics import shard_of
        from herald.models.domain import now

        self.grow(users)
        at = now().isoformat()
        items = [
            {
                "topic_shard": {"S": f"{name}#{shard_of(self.user(i)):02d}"},
                "user_id": {"S": self.user(i)},
                "topic": {"S": name},
                "subscribed_at": {"S": at},
            }
            for i in range(users)
        ]
        self._write(self._subscribers, items)
        return name

    def _write(self, table: str, items: list[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            request = {table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]}
            while request:
                request = self._dynamodb.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


class Broadcaster:
    """The low lane's fan-out handler, on a queue of its own and a topic nobody subscribes to."""

    def __init__(self, bench: BenchStack, page_deliveries: int):
        from herald.adapters.clients import client

        function = bench.stack.functions[LANE]
        self.module = sys.modules[function.spec.handler.rsplit(".", 1)[0]]
        self.sqs = client("sqs")
        self.queue = self.sqs.create_queue(QueueName=f"bench-broadcast-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        self.arn = self.sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        topic = client("sns").create_topic(Name=f"bench-broadcast-{uuid.uuid4().hex[:8]}")["TopicArn"]
        environment = {
            **function.environment,
            "TOPIC_ARN": topic,
            "QUEUE_URL": self.queue,
            "PAGE_DELIVERIES": str(page_deliveries),
            "PAGE_USERS": str(page_deliveries),
        }
        # Its EMF goes to the stack's collector, as the stack's own functions' does, not onto this report's stdout.
        self.dependencies = bench.stack.metrics.hook(function.name, self.module.dependencies_from(environment))
        self.function = function
        self.bench = bench

    def send(self, topic: str) -> str:
        from herald.models.domain import Notification, Priority, now

        notification = Notification(
            notification_id=str(uuid.uuid4()),
            topic=topic,
            title="Broadcast",
            body="benchmark",
            priority=Priority.LOW,
            accepted_at=now(),
        )
        self.dependencies.status.record_accepted(notification)
        self.sqs.send_message(QueueUrl=self.queue, MessageBody=notification.model_dump_json(exclude_none=True))
        return notification.notification_id

    def run(self, size: Size, traced: int = 0) -> None:
        """Invokes the handler on what waits in the queue until nothing does (or, tracing, `traced` times)."""
        from herald_local.functions import LocalContext

        while True:
            messages = self.sqs.receive_message(
                QueueUrl=self.queue, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
            ).get("Messages", [])
            if not messages:
                return
            event = {"Records": [_record(message, self.arn) for message in messages]}
            context = LocalContext(self.function.name, self.function.spec.timeout)
            if traced:
                tracemalloc.reset_peak()
                base = tracemalloc.get_traced_memory()[0]
            started, cpu = time.perf_counter(), cpu_seconds()
            result = self.module.lambda_handler(event, context, self.dependencies)
            seconds = time.perf_counter() - started
            size.cpu += cpu_seconds() - cpu
            if traced:
                size.peak_bytes = max(size.peak_bytes, tracemalloc.get_traced_memory()[1] - base)
            failed = {f["itemIdentifier"] for f in result.get("batchItemFailures", [])}
            done = [m for m in messages if m["MessageId"] not in failed]
            for message in done:
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            for message in messages:  # what the handler handed back comes back at once, as it asked
                if message["MessageId"] in failed:
                    self.sqs.change_message_visibility(
                        QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                    )
            size.invocations += 1
            size.pages += len(done)
            size.seconds += seconds
            size.slowest_invocation = max(size.slowest_invocation, seconds)
            if traced and size.invocations >= traced:
                self.sqs.purge_queue(QueueUrl=self.queue)
                return


def _record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": {"ApproximateReceiveCount": message["Attributes"]["ApproximateReceiveCount"]},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
    }


def fan_out(bench: BenchStack, broadcaster: Broadcaster, population: Population, size: Size) -> None:
    topic = population.topic(f"{size.name}-{uuid.uuid4().hex[:6]}", size.devices)
    progress(f"{size.name}: broadcast to {size.devices} devices")
    before = bench.counter.snapshot()
    broadcaster.send(topic)
    broadcaster.run(size)
    tally = bench.counter.snapshot().since(before)
    fanout_calls = {k: n for k, n in tally.calls.items() if k.origin == Origin.HERALD and k.function == "fanout"}
    size.calls = sum(fanout_calls.values())
    for key, n in fanout_calls.items():
        name = f"{key.service} {key.operation}"
        size.calls_by_operation[name] = size.calls_by_operation.get(name, 0) + n
    # Memory, on a second broadcast to the same topic: a sample of its invocations, traced.
    tracemalloc.start()
    try:
        broadcaster.send(topic)
        traced = Size(size.name, size.devices)
        broadcaster.run(traced, traced=SAMPLED_INVOCATIONS)
        size.peak_bytes = traced.peak_bytes
    finally:
        tracemalloc.stop()


def default_page_peak(bench: BenchStack, population: Population, devices: int) -> int:
    """Peak memory of one page of the template's default size, for information."""
    broadcaster = Broadcaster(bench, DEFAULT_PAGE)
    topic = population.topic(f"default-page-{uuid.uuid4().hex[:6]}", devices)
    tracemalloc.start()
    try:
        broadcaster.send(topic)
        sample = Size("default", devices)
        broadcaster.run(sample, traced=3)  # the root, then pages
        return sample.peak_bytes
    finally:
        tracemalloc.stop()


@dataclass
class Delivered:
    devices: int
    status: dict[str, Any]
    inbox_writes: int
    inbox_items: int
    slowest_deliver: float
    slowest_fanout: float
    seconds: float


def deliver_through_the_stack(bench: BenchStack, population: Population, devices: int) -> Delivered:
    """A normal-priority broadcast over HTTP, to every device's inbox; checked exactly once."""
    from herald.adapters.clients import client

    topic = population.topic(f"delivered-{uuid.uuid4().hex[:6]}", devices)
    progress(f"through the stack: a broadcast to {devices} devices, over HTTP, to their inboxes")
    before, clock_before = bench.counter.snapshot(), len(bench.clock.snapshot())
    started = time.perf_counter()
    response = bench.http.post(
        f"{bench.stack.api_url}/notifications",
        json={"topic": topic, "title": "Broadcast", "body": "to everyone", "priority": "normal"},
        timeout=30,
    )
    if response.status_code != 202:
        raise BenchError(f"POST /notifications answered {response.status_code}: {response.text}")
    notification_id = response.json()["notification_id"]
    deadline = time.monotonic() + 1800
    while True:
        status = bench.http.get(f"{bench.stack.api_url}/notifications/{notification_id}", timeout=30).json()
        if status["status"] not in ("accepted", "in_progress"):
            break
        if time.monotonic() > deadline:
            raise BenchError(f"broadcast not final in 30 min: {status['counts']}")
        time.sleep(1)
    seconds = time.perf_counter() - started
    tally = bench.counter.snapshot().since(before)
    inbox = bench.ref("InboxTable")
    writes = sum(
        n
        for k, n in tally.calls.items()
        if k.origin == Origin.HERALD and k.function == "deliver" and k.operation == "PutItem" and k.resource == inbox
    )
    items = 0
    for page in client("dynamodb").get_paginator("scan").paginate(TableName=inbox):
        items += sum(json.loads(item["item"]["S"])["notification_id"] == notification_id for item in page["Items"])
    invocations = bench.clock.snapshot()[clock_before:]
    deliver = [i.seconds for i in invocations if i.function.startswith("Deliver")]
    fanout = [i.seconds for i in invocations if i.function.startswith("Fanout")]
    return Delivered(devices, status, writes, items, max(deliver, default=0), max(fanout, default=0), seconds)


def marginal(sizes: list[Size], value: Any) -> float:
    """Cost per device from half to all over that from a tenth to half: 1.0 when linear. Not a number
    (so the budget cannot hold) when a step did not grow: noise larger than the signal, no verdict."""
    tenth, half, full = sizes
    lower = (value(half) - value(tenth)) / (half.devices - tenth.devices)
    upper = (value(full) - value(half)) / (full.devices - half.devices)
    return upper / lower if lower > 0 and upper > 0 else math.inf


def page_for(devices: int) -> int:
    """The largest page (up to 200) that the tenth of `devices`, spread over 16 chains, still fills."""
    return max(10, min(200, devices // 10 // 16 // 10 * 10))


def run(scale: Scale, backend: Backend, devices: int | None, minutes: float) -> Report:
    report = Report("broadcast", scale)
    target = devices or TARGET[scale]
    started = time.perf_counter()
    with running_stack(backend=backend) as bench:
        report.emulator = bench.emulator
        population = Population(bench)
        timeout = int(bench.stack.functions[LANE].spec.timeout)
        deliver_timeout = int(bench.stack.functions["DeliverNormalFunction"].spec.timeout)
        # As many devices as fit: a first broadcast's pace (seeding and the traced sample included) says how
        # many the time left takes for a tenth, half and all of them (1.6 N).
        calibration = Size("calibration", min(CALIBRATION[scale], target))
        paced = time.perf_counter()
        fan_out(bench, Broadcaster(bench, page_for(target)), population, calibration)
        pace = calibration.devices / (time.perf_counter() - paced)
        budget = minutes * 60 - (time.perf_counter() - started) - RESERVED_SECONDS
        measured = min(target, max(int(budget * pace / 1.6) // 160 * 160, 160))
        extrapolated = measured < target
        if extrapolated:
            progress(f"{target} devices would not fit in {minutes:g} min here: measuring up to {measured}")
        page = page_for(measured)
        broadcaster = Broadcaster(bench, page)
        tenth, half, full = Size("tenth", measured // 10), Size("half", measured // 2), Size("all", measured)
        for size in (tenth, half, full):
            fan_out(bench, broadcaster, population, size)
        default_peak = default_page_peak(bench, population, min(measured, 4 * DEFAULT_PAGE))
        delivered = deliver_through_the_stack(bench, population, min(DELIVERED[scale], measured))
    sizes = [tenth, half, full]
    time_growth = marginal(sizes, lambda s: s.cpu)
    wall_growth = marginal(sizes, lambda s: s.seconds)
    calls_growth = marginal(sizes, lambda s: s.calls)
    memory = full.peak_bytes / tenth.peak_bytes if tenth.peak_bytes else math.inf
    slowest = max([*(s.slowest_invocation for s in sizes), delivered.slowest_fanout])
    time_fit = linear_fit([s.devices for s in sizes], [s.cpu for s in sizes])
    calls_fit = linear_fit([s.devices for s in sizes], [s.calls for s in sizes])
    counts = delivered.status.get("counts", {})
    exactly_once = (
        counts == {"sent": delivered.devices}
        and delivered.inbox_writes == delivered.devices
        and delivered.inbox_items == delivered.devices
    )
    report.tables.append(
        Table(
            f"Fan-out of one broadcast (pages of {page}; one invocation at a time)",
            (
                "size",
                "devices",
                "fan-out s",
                "CPU s",
                "CPU ms/device",
                "calls",
                "calls/device",
                "invocations",
                "slowest s",
                "peak MiB",
            ),
            [
                (
                    s.name,
                    s.devices,
                    f"{s.seconds:.1f}",
                    f"{s.cpu:.1f}",
                    f"{s.cpu * 1000 / s.devices:.3f}",
                    s.calls,
                    f"{s.calls / s.devices:.3f}",
                    s.invocations,
                    f"{s.slowest_invocation:.2f}",
                    f"{s.peak_bytes / 2**20:.2f}",
                )
                for s in sizes
            ],
        )
    )
    report.tables.append(
        Table(
            "Through the whole stack (HTTP in, inboxes out)",
            ("devices", "status", "counts", "inbox writes", "inbox items", "slowest deliver s", "seconds"),
            [
                (
                    delivered.devices,
                    delivered.status.get("status"),
                    json.dumps(counts),
                    delivered.inbox_writes,
                    delivered.inbox_items,
                    f"{delivered.slowest_deliver:.2f}",
                    f"{delivered.seconds:.0f}",
                )
            ],
        )
    )
    per_million = time_fit.slope * 1_000_000  # CPU seconds of fan-out per million devices
    report.budgets = [
        Budget(
            f"marginal fan-out CPU time/device {half.devices}->{full.devices} vs {tenth.devices}->{half.devices}",
            time_growth,
            LINEAR_BUDGET,
        ),
        Budget("marginal AWS calls/device, same sizes", calls_growth, LINEAR_BUDGET),
        Budget(f"fan-out peak memory, {full.devices} vs {tenth.devices} devices", memory, MEMORY_BUDGET),
        Budget("slowest fan-out invocation / its timeout", slowest / timeout, HALF_TIMEOUT),
        Budget("slowest deliver invocation / its timeout", delivered.slowest_deliver / deliver_timeout, HALF_TIMEOUT),
        Budget("deliveries not sent exactly once", 0.0 if exactly_once else 1.0, 0.0, unit=""),
    ]
    report.figures = {
        "page_deliveries": page,
        "calibration": calibration.as_json(),
        "target_devices": target,
        "measured_devices": measured,
        "extrapolated": extrapolated,
        "sizes": [s.as_json() for s in sizes],
        "marginal_time_growth": _finite(time_growth),
        "marginal_wall_time_growth": _finite(wall_growth),
        "marginal_calls_growth": _finite(calls_growth),
        "memory_ratio": _finite(memory),
        "default_page_peak_mib": round(default_peak / 2**20, 2),
        "time_fit": {"ms_per_device": round(time_fit.slope * 1000, 4), "r_squared": round(time_fit.r_squared, 4)},
        "calls_fit": {"per_device": round(calls_fit.slope, 4), "r_squared": round(calls_fit.r_squared, 4)},
        "fanout_cpu_seconds_per_million_devices": round(per_million, 0),
        "delivered": {
            "devices": delivered.devices,
            "counts": counts,
            "inbox_writes": delivered.inbox_writes,
            "inbox_items": delivered.inbox_items,
            "slowest_deliver_s": round(delivered.slowest_deliver, 2),
            "slowest_fanout_s": round(delivered.slowest_fanout, 2),
            "seconds": round(delivered.seconds, 1),
        },
    }
    report.headline = [
        f"a broadcast to {tenth.devices}, {half.devices} and {full.devices} in-app devices"
        + (f" ({target} did not fit in {minutes:g} min here: the rest is extrapolated)" if extrapolated else "")
        + f": fan-out {time_fit.slope * 1000:.3f} ms of CPU and {calls_fit.slope:.3f} AWS calls per device (r^2 "
        f"{time_fit.r_squared:.3f} and {calls_fit.r_squared:.3f}); marginal growth CPU time {time_growth:.2f}x, calls "
        f"{calls_growth:.2f}x (wall time {wall_growth:.2f}x on this shared machine)",
        f"peak memory of a fan-out invocation {tenth.peak_bytes / 2**20:.1f} MiB at {tenth.devices} devices, "
        f"{full.peak_bytes / 2**20:.1f} MiB at {full.devices} ({memory:.2f}x; pages of {page}); a default page of "
        f"{DEFAULT_PAGE} peaks at {default_peak / 2**20:.1f} MiB; slowest invocation {slowest:.1f} s of {timeout} s",
        f"extrapolated by the fit: 100,000 devices {time_fit.at(100_000) / 60:.1f} min and 1,000,000 "
        f"{time_fit.at(1_000_000) / 60:.0f} min of fan-out CPU here (Herald's and the emulator's), "
        f"{calls_fit.at(1_000_000) / 1e6:.2f} million AWS calls",
        f"through the stack: {delivered.devices} devices, {json.dumps(counts)}, {delivered.inbox_writes} inbox writes "
        f"for {delivered.inbox_items} inbox items: "
        + ("each delivery sent exactly once" if exactly_once else "NOT exactly once"),
    ]
    report.notes += [
        "Fan-out time is the sum of the handler's invocations, run one at a time in this process against the "
        "emulator; on AWS the 16 chains of a broadcast run in parallel, up to the lane's MaximumConcurrency. "
        "Linearity is judged on CPU time (this process's and the emulator's): wall time on a shared machine moves "
        "with other work more than with the audience. A budget whose steps did not both grow reads n/a.",
        "The emulator reads a queried partition only (bench.stack.quicken_emulator_queries): stock moto lists "
        "and sorts a whole table on every Query, so per-subscriber device lookups would grow with the square of "
        "the audience there, which DynamoDB does not do.",
        "Memory is what tracemalloc sees of Python's allocations during an invocation (moto runs in its own "
        "process with --backend process, the default here), sampled over the first invocations of a second broadcast "
        "to the same topic.",
    ]
    return report


def _finite(value: float) -> float | None:
    return round(value, 3) if math.isfinite(value) else None


def options(parser: argparse.ArgumentParser) -> None:
    backend_option(parser)
    parser.add_argument("--devices", type=int, default=None, help="the full size (default: 100,000; tiny: 400)")
    parser.add_argument("--minutes", type=float, default=MINUTES, help="fit the sizes into about this long")


if __name__ == "__main__":
    sys.exit(
        main(
            "broadcast",
            lambda a: run(a.scale, a.backend or Backend.PROCESS, a.devices, a.minutes),
            __doc__ or "",
            options,
        )
    )
