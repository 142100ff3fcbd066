"""Requests per notification: every AWS call counted while the local stack delivers notifications to
users with 1, 3, 10 and 100 push devices, beside the floor the architecture allows (bench/floor.py).

`python -m bench.requests [--scale tiny|full]`. Budget: calls per notification <= 1.1x the floor, for
1, 3, 10 and 100 devices.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.calls import Origin, Tally
from bench.floor import (
    INTAKE_RECEIVE,
    LINES,
    OTHER,
    PRIORITY_RECEIVE,
    Batching,
    Shape,
    floor_per_notification,
    line_of,
)
from bench.report import Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, Invocation, backend_option, running_stack

BUDGET = 1.1
PRIORITY = "normal"  # the default priority; its queue's batch size is the floor's
# Notifications per device count, sent as one burst: enough deliveries for batches to fill.
NOTIFICATIONS = {
    Scale.TINY: {1: 2, 3: 2},
    Scale.FULL: {1: 120, 3: 40, 10: 12, 100: 4},
}
SETTLE_SECONDS = 0.3  # after the last delete: calls still in flight (none expected) get counted


@dataclass
class Measurement:
    """What `notifications` notifications of one shape cost, in calls and handler time."""

    shape: Shape
    notifications: int
    batching: Batching
    lines: Counter[str] = field(default_factory=Counter)  # calls by line of the floor
    empty_receives: int = 0  # the mapping's receives that found nothing (idle polling, batching windows)
    herald_calls: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)  # (function, service, op, role)
    herald_entries: Counter[tuple[str, str, str, str]] = field(default_factory=Counter)
    invocations: dict[str, list[Invocation]] = field(default_factory=dict)
    seconds: float = 0.0

    def per_notification(self, line: str) -> float:
        return self.lines[line] / self.notifications

    @property
    def measured(self) -> float:
        """Calls per notification: Herald's, plus the mapping's receives that returned messages and its deletes."""
        return sum(self.lines.values()) / self.notifications

    @property
    def floor(self) -> float:
        return sum(floor_per_notification(self.shape, self.batching).values())

    @property
    def ratio(self) -> float:
        return self.measured / self.floor


def mappings_of(bench: BenchStack, priority: str) -> tuple[Any, Any]:
    """The mapping that fans a notification of this priority out (its priority's intake lane where
    there are several) and the one that delivers it."""
    sources = bench.event_sources()
    fanouts = [s for s in sources if bench.stack.functions[s.function].spec.handler.startswith("fanout.")]
    lane = [s for s in fanouts if priority.title() in s.queue] or fanouts
    deliver = bench.deliver_function(priority).name
    return lane[0], next(s for s in sources if s.function == deliver)


def batching_of(bench: BenchStack, priority: str) -> Batching:
    """The lane's batch sizes, and the push deliveries its deliver function sends at once (the devices here)."""
    intake, deliver = mappings_of(bench, priority)
    settings = bench.deliver_function(priority).dependencies.settings
    sends = min(settings.parallel_sends, settings.push_parallel_sends)
    return Batching(intake=intake.batch_size, priority=deliver.batch_size, sends=sends)


def tally_lines(bench: BenchStack, tally: Tally, measurement: Measurement) -> None:
    for key, calls in tally.calls.items():
        if key.origin not in (Origin.HERALD, Origin.POLLER):
            continue
        role = bench.role(key.resource)
        line = line_of(key.origin, key.function, key.service, key.operation, role)
        if key.operation == "ReceiveMessage":
            empty = tally.empty_receives[key]
            measurement.empty_receives += empty
            calls -= empty
        measurement.lines[line] += calls
        if key.origin == Origin.HERALD:
            measurement.herald_calls[(key.function, key.service, key.operation, role)] += calls
            measurement.herald_entries[(key.function, key.service, key.operation, role)] += tally.entries[key]


def measure(bench: BenchStack, devices: int, notifications: int, priority: str = PRIORITY) -> Measurement:
    """Sends `notifications` notifications at once to one user with `devices` push devices; counts
    every call from the first POST to the last delete."""
    user = f"user-{devices}-devices"
    bench.add_devices(user, devices)
    shape = Shape(recipients=1, devices=devices)
    measurement = Measurement(shape, notifications, batching_of(bench, priority))
    bench.reset()
    started = time.perf_counter()
    for _ in range(notifications):
        bench.send([user], priority)
    deliveries = notifications * shape.deliveries
    messages = notifications * shape.messages  # a recipient's devices travel together in a message
    intake, deliver = mappings_of(bench, priority)
    bench.wait_until(
        lambda: bench.deleted(intake.queue) >= notifications and bench.deleted(deliver.queue) >= messages,
        timeout=120 + deliveries / 5,
        what=f"{deliveries} deliveries ({messages} messages) to users with {devices} devices",
    )
    measurement.seconds = time.perf_counter() - started
    time.sleep(SETTLE_SECONDS)
    tally_lines(bench, bench.counter.snapshot(), measurement)
    measurement.invocations = bench.handler_seconds()
    return measurement


def herald_call_table(measurements: list[Measurement]) -> Table:
    keys = sorted({key for m in measurements for key in m.herald_calls})
    rows = []
    for function, service, operation, role in keys:
        key = (function, service, operation, role)
        rows.append(
            (
                function,
                f"{service} {operation}",
                role,
                *(f"{m.herald_calls[key] / m.notifications:.2f}" for m in measurements),
            )
        )
    return Table(
        "Herald's calls per notification, by function and operation",
        ("function", "call", "resource", *(f"{m.shape.devices} dev" for m in measurements)),
        rows,
    )


def line_table(measurements: list[Measurement]) -> Table:
    rows = []
    for line in (*LINES, OTHER):
        cells = []
        for m in measurements:
            floor = floor_per_notification(m.shape, m.batching).get(line, 0.0)
            cells.append(f"{m.per_notification(line):.2f} / {floor:.2f}")
        rows.append((line, *cells))
    return Table(
        "Calls per notification by line: measured / floor",
        ("line", *(f"{m.shape.devices} devices" for m in measurements)),
        rows,
    )


def summary_table(measurements: list[Measurement]) -> Table:
    rows = [
        (
            m.shape.devices,
            m.notifications,
            f"{m.measured:.2f}",
            f"{m.measured / m.shape.deliveries:.2f}",
            f"{m.floor:.2f}",
            f"{m.ratio:.2f}x",
            f"{m.empty_receives / m.notifications:.2f}",
        )
        for m in measurements
    ]
    return Table(
        f"Calls per notification ({PRIORITY} priority, push devices)",
        ("devices", "notifications", "calls/notif", "calls/delivery", "floor/notif", "ratio", "empty recv/notif"),
        rows,
    )


def figures_of(m: Measurement) -> dict[str, object]:
    floor = floor_per_notification(m.shape, m.batching)
    return {
        "devices": m.shape.devices,
        "notifications": m.notifications,
        "calls_per_notification": round(m.measured, 3),
        "calls_per_delivery": round(m.measured / m.shape.deliveries, 3),
        "floor_per_notification": round(m.floor, 3),
        "ratio_to_floor": round(m.ratio, 3),
        "empty_receives_per_notification": round(m.empty_receives / m.notifications, 3),
        "lines": {
            line: {"measured": round(m.per_notification(line), 3), "floor": round(floor.get(line, 0.0), 3)}
            for line in (*LINES, OTHER)
        },
        "herald_calls": {" ".join(key): round(n / m.notifications, 3) for key, n in sorted(m.herald_calls.items())},
        "seconds": round(m.seconds, 2),
    }


def run(scale: Scale, backend: Backend = Backend.EMBEDDED) -> Report:
    report = Report("requests", scale)
    measurements = []
    with running_stack(backend=backend) as bench:
        report.emulator = bench.emulator
        for devices, notifications in NOTIFICATIONS[scale].items():
            progress(f"{notifications} notifications to a user with {devices} devices")
            measurements.append(measure(bench, devices, notifications))
    report.tables += [summary_table(measurements), line_table(measurements), herald_call_table(measurements)]
    report.figures = {"priority": PRIORITY, "shapes": [figures_of(m) for m in measurements]}
    report.budgets = [
        Budget(f"calls/notification, {m.shape.devices} devices, vs floor", m.ratio, BUDGET) for m in measurements
    ]
    report.headline += [
        f"{m.shape.devices} device{'s' if m.shape.devices > 1 else ''}: {m.measured:.2f} calls per notification "
        f"({m.measured / m.shape.deliveries:.2f} per delivery), floor {m.floor:.2f}: {m.ratio:.2f}x"
        for m in measurements
    ]
    report.notes += [
        "Counted with botocore event hooks on every client of the stack; the benchmark's own setup and reads "
        "are not counted. 'mapping' lines are the local poller doing what Lambda's event source mapping does: "
        "its receives that returned messages, and its deletes.",
        f"Empty receives (idle polling, batching windows) are reported apart: on AWS the mapping long-polls "
        f"each queue at a fixed cost per hour, not per notification. Floor lines: {INTAKE_RECEIVE!r} and "
        f"{PRIORITY_RECEIVE!r} assume full batches.",
        "The floor counts 2 status writes (claim, then outcome) per group of a recipient's deliveries in one "
        "deliver batch, the fewest full batches allow (bench/floor.py recipient_groups): the reliability design's. The "
        "mapping's calls are measured as the local poller made them (timing decides how many messages share a "
        "receive); the floor amortises them over full batches.",
    ]
    if any(m.lines[OTHER] for m in measurements):
        report.notes.append("'other' calls exist: see the 'other' line and Herald's call table.")
    return report


if __name__ == "__main__":
    sys.exit(main("requests", lambda a: run(a.scale, a.backend or Backend.EMBEDDED), __doc__ or "", backend_option))
