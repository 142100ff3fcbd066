"""Fan-out scale: one notification to a user with 1, 10, 100 and 1,000 devices, and one to 1,000
recipients with a device each: the fan-out handler's AWS calls and time, the slope of each against
the number of deliveries (least squares), and whether they grow linearly.

`python -m bench.fanout_scale [--scale tiny|full]`. Budget: the marginal time per delivery between
the two largest users at most 2x that between the two sizes below (linear growth gives 1x,
quadratic growth ~10x); the same for AWS calls, at most 1.25x.

The handler runs in this process on the local stack's tables, invoked on an intake record shaped
like events/fanout.json (1,000 recipients is more than the API accepts in one request: the intake
message is built here). It publishes to a topic without subscribers: on AWS a publish returns
before SNS delivers, while moto delivers into the queues inside the publish at a cost that grows
with their depth; that time would be the emulator's, not Herald's.
"""

from __future__ import annotations

import copy
import json
import math
import statistics
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.calls import Origin
from bench.figures import linear_fit
from bench.floor import (
    FANOUT_DEVICE_QUERY,
    FANOUT_PUBLISH,
    FANOUT_STATUS,
    Batching,
    Shape,
    floor_per_notification,
)
from bench.report import BenchError, Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, backend_option, running_stack

EVENT = Path(__file__).resolve().parent.parent / "events" / "fanout.json"
# Linear growth gives 1x, quadratic ~10x over these sizes; handler time on this 2-core machine
# varies by about +-30% between runs, so 2x separates the two. Calls are exact: 1.25x.
TIME_BUDGET = 2.0
CALLS_BUDGET = 1.25
SIZES = {Scale.TINY: (1, 50, 100), Scale.FULL: (1, 10, 100, 1000)}
RECIPIENTS = {Scale.TINY: 10, Scale.FULL: 1000}
REPEATS = {Scale.TINY: 3, Scale.FULL: 3}  # the many-recipients case runs once: it takes seconds
FANOUT_LINES = (FANOUT_DEVICE_QUERY, FANOUT_PUBLISH, FANOUT_STATUS)


@dataclass
class Case:
    name: str
    shape: Shape
    calls: Counter[str] = field(default_factory=Counter)  # "service Operation" -> calls of one run
    call_seconds: Counter[str] = field(default_factory=Counter)  # time waiting for those calls, same run
    seconds: list[float] = field(default_factory=list)

    @property
    def deliveries(self) -> int:
        return self.shape.deliveries

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def median_ms(self) -> float:
        return statistics.median(self.seconds) * 1000

    @property
    def floor(self) -> float:
        lines = floor_per_notification(self.shape, Batching(intake=10, priority=10))
        return sum(lines[line] for line in FANOUT_LINES)


class Fanout:
    """The fan-out function's handler with dependencies publishing to a topic nobody subscribes to."""

    def __init__(self, bench: BenchStack):
        from herald.adapters.clients import client
        from herald_local.functions import LocalContext

        function = bench.stack.functions["FanoutLowFunction"]  # the lane of the notifications it builds
        self.module = sys.modules[function.spec.handler.rsplit(".", 1)[0]]
        topic = client("sns").create_topic(Name=f"bench-fanout-{uuid.uuid4().hex[:8]}")["TopicArn"]
        dependencies = self.module.dependencies_from({**function.environment, "TOPIC_ARN": topic})
        # Its EMF goes to the stack's collector, as the stack's own functions' does, not onto this report's stdout.
        self.dependencies = bench.stack.metrics.hook(function.name, dependencies)
        self.context = LocalContext(function.name, function.spec.timeout)
        self.template = json.loads(EVENT.read_text())

    def event(self, recipients: list[str]) -> dict[str, Any]:
        from herald.models.domain import Notification, now

        notification = Notification(
            notification_id=str(uuid.uuid4()),
            recipients=recipients,
            title="Scale",
            body="benchmark",
            priority="low",
            accepted_at=now(),
        )
        event = copy.deepcopy(self.template)
        event["Records"] = event["Records"][:1]
        event["Records"][0].update(messageId=str(uuid.uuid4()), body=notification.model_dump_json())
        return event

    def invoke(self, event: dict[str, Any]) -> float:
        started = time.perf_counter()
        result = self.module.lambda_handler(event, self.context, self.dependencies)
        seconds = time.perf_counter() - started
        if result.get("batchItemFailures"):
            raise BenchError(f"fan-out reported a failure: {result}")
        return seconds


def run_case(bench: BenchStack, fanout: Fanout, case: Case, recipients: list[str], repeats: int) -> None:
    for repeat in range(repeats):
        event = fanout.event(recipients)
        bench.reset()
        case.seconds.append(fanout.invoke(event))
        if repeat == 0:
            tally = bench.counter.snapshot()
            for key, calls in tally.calls.items():
                if key.origin == Origin.HERALD:
                    case.calls[f"{key.service} {key.operation}"] += calls
                    case.call_seconds[f"{key.service} {key.operation}"] += tally.seconds[key]


def marginal_growth(
    small: tuple[float, float], middle: tuple[float, float], large: tuple[float, float]
) -> float | None:
    """(x, y) at three sizes: the slope from middle to large over the slope from small to middle.
    1.0 for a straight line; above 1 when each delivery costs more the more there are. None when y
    did not grow from small to middle (noise larger than the signal: nothing to judge)."""
    lower = (middle[1] - small[1]) / (middle[0] - small[0])
    upper = (large[1] - middle[1]) / (large[0] - middle[0])
    if lower <= 0:
        return None
    return upper / lower


def largest_ratio(device_cases: list[Case], wide: Case) -> float:
    """The wide case's time over the single-user case with as many deliveries (or the largest)."""
    same = [case for case in device_cases if case.deliveries == wide.deliveries] or device_cases[-1:]
    return wide.median_ms / same[0].median_ms * (same[0].deliveries / wide.deliveries)


def cases_table(cases: list[Case]) -> Table:
    operations = sorted({op for case in cases for op in case.calls})
    return Table(
        "Fan-out of one notification (median handler time; calls of one run)",
        ("case", "deliveries", "ms", "ms/delivery", "calls", "floor", *operations),
        [
            (
                case.name,
                case.deliveries,
                f"{case.median_ms:.1f}",
                f"{case.median_ms / case.deliveries:.3f}",
                case.total_calls,
                f"{case.floor:g}",
                *(case.calls[op] for op in operations),
            )
            for case in cases
        ],
    )


def run(scale: Scale, backend: Backend = Backend.EMBEDDED) -> Report:
    report = Report("fanout_scale", scale)
    sizes, recipients_count, repeats = SIZES[scale], RECIPIENTS[scale], REPEATS[scale]
    with running_stack(backend=backend) as bench:
        report.emulator = bench.emulator
        progress(f"registering devices: {sum(sizes)} for users of {sizes}, and {recipients_count} recipients")
        for size in sizes:
            bench.add_devices(f"scale-{size}", size, channel="in_app")
        recipients = [f"recipient-{index:04d}" for index in range(recipients_count)]
        for user in recipients:
            bench.add_devices(user, 1, channel="in_app")
        fanout = Fanout(bench)
        fanout.invoke(fanout.event(["scale-1"]))  # warm: the first invocation builds what a container keeps
        device_cases = []
        for size in sizes:
            progress(f"fan-out to a user with {size} devices, {repeats}x")
            case = Case(f"1 user x {size} devices", Shape(1, size))
            run_case(bench, fanout, case, [f"scale-{size}"], repeats)
            device_cases.append(case)
        progress(f"fan-out to {recipients_count} recipients, {repeats}x")
        wide = Case(f"{recipients_count} users x 1 device", Shape(recipients_count, 1))
        run_case(bench, fanout, wide, recipients, 1)

    xs = [case.deliveries for case in device_cases]
    time_fit = linear_fit(xs, [case.median_ms for case in device_cases])
    calls_fit = linear_fit(xs, [case.total_calls for case in device_cases])
    small, middle, large = device_cases[-3:]
    growth = marginal_growth(
        (small.deliveries, small.median_ms), (middle.deliveries, middle.median_ms), (large.deliveries, large.median_ms)
    )
    calls_growth = marginal_growth(
        (small.deliveries, small.total_calls),
        (middle.deliveries, middle.total_calls),
        (large.deliveries, large.total_calls),
    )
    report.tables.append(cases_table([*device_cases, wide]))
    report.tables.append(
        Table(
            "Linear fit over the devices-per-user cases (y = slope x deliveries + intercept)",
            ("figure", "slope per delivery", "intercept", "r^2"),
            [
                ("handler ms", f"{time_fit.slope:.4f}", f"{time_fit.intercept:.2f}", f"{time_fit.r_squared:.4f}"),
                ("AWS calls", f"{calls_fit.slope:.4f}", f"{calls_fit.intercept:.2f}", f"{calls_fit.r_squared:.4f}"),
            ],
        )
    )
    report.figures = {
        "cases": [
            {
                "recipients": case.shape.recipients,
                "devices_per_recipient": case.shape.devices,
                "deliveries": case.deliveries,
                "median_ms": round(case.median_ms, 2),
                "ms_per_delivery": round(case.median_ms / case.deliveries, 4),
                "calls": case.total_calls,
                "floor_calls": case.floor,
                "calls_by_operation": dict(case.calls),
            }
            for case in [*device_cases, wide]
        ],
        "time_fit": {"slope_ms_per_delivery": round(time_fit.slope, 4), "r_squared": round(time_fit.r_squared, 4)},
        "calls_fit": {"slope_per_delivery": round(calls_fit.slope, 4), "r_squared": round(calls_fit.r_squared, 4)},
        "marginal_time_growth": None if growth is None else round(growth, 3),
        "marginal_calls_growth": None if calls_growth is None else round(calls_growth, 3),
        "wide_ms_per_delivery": round(wide.median_ms / wide.deliveries, 4),
    }
    if growth is None:
        report.notes.append(f"Time did not grow from {small.deliveries} to {middle.deliveries} deliveries: too noisy.")
    report.budgets.append(
        Budget(
            f"marginal ms/delivery {middle.deliveries}->{large.deliveries} vs {small.deliveries}->{middle.deliveries}",
            math.inf if growth is None else growth,
            TIME_BUDGET,
        )
    )
    if calls_growth is not None:  # None: calls did not grow at all over the small sizes (one page, one batch)
        report.budgets.append(
            Budget(
                f"marginal calls/delivery {middle.deliveries}->{large.deliveries} vs "
                f"{small.deliveries}->{middle.deliveries}",
                calls_growth,
                CALLS_BUDGET,
            )
        )
    report.headline += [
        f"{time_fit.slope:.3f} ms and {calls_fit.slope:.3f} AWS calls per delivery (r^2 {time_fit.r_squared:.3f} and "
        f"{calls_fit.r_squared:.4f}) over 1 user with {', '.join(str(c.deliveries) for c in device_cases)} devices",
        "marginal time per delivery, largest step over the step before: "
        + ("n/a" if growth is None else f"{growth:.2f}x")
        + ("" if calls_growth is None else f"; calls {calls_growth:.2f}x"),
        f"{wide.shape.recipients} recipients x 1 device: {wide.median_ms / wide.deliveries:.2f} ms and "
        f"{wide.total_calls / wide.deliveries:.2f} calls per delivery "
        f"({largest_ratio(device_cases, wide):.1f}x the time of the same deliveries to one user): "
        "one device query per recipient, 16 at a time",
    ]
    report.notes += [
        f"Slopes: {time_fit.slope:.4f} ms and {calls_fit.slope:.4f} AWS calls per delivery "
        f"(r^2 {time_fit.r_squared:.4f} and {calls_fit.r_squared:.4f}).",
        "Floor: one device query page per recipient, ceil(n/10) PublishBatch, two "
        "UpdateItem (bench/floor.py). Many recipients cost a query each (16 in flight at once): that is the "
        "per-recipient term.",
        "Published to a topic without subscribers, so moto's per-queue cost does not enter the handler's time.",
    ]
    return report


if __name__ == "__main__":
    sys.exit(main("fanout_scale", lambda a: run(a.scale, a.backend or Backend.EMBEDDED), __doc__ or "", backend_option))
