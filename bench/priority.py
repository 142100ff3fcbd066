"""Priority isolation: high-priority accepted-to-sent latency alone, then while at least 2,000
low-priority deliveries drain, on the local stack (in-app devices).

`python -m bench.priority [--scale tiny|full] [--backend ...]`. Budget: p99 under the flood <= 1.5x the
idle p99, judged with moto in its own process (see run()).
The foundation's budget is judged on the idle run too: every high-priority notification sent
within 1 s of being accepted.

Three runs of the same paced high-priority notifications (one user, one in-app device):
  idle       nothing else in flight;
  draining   the low-priority flood already fanned out: its deliveries sit in the low queue and
             drain through their own mapping and function (the budget);
  fan-out    sent right behind the flood's notifications, so it shares the intake queue and the
             fan-out function with them (for information: one intake queue serves every priority).
Latency is the status store's `accepted_at` to the delivery's `sent_at`. The figures include how
long the emulator took to answer the high path's AWS calls in each run, and the low queue's depth:
moto scans a whole queue on every SQS call, so a deep low queue slows every call on the server.
"""

from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass, field

from bench.calls import Origin, Tally
from bench.figures import percentile
from bench.figures import ratio as ratio_of
from bench.report import BenchError, Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, backend_option, running_stack

FLOOD_BUDGET = 1.5
SENT_WITHIN_S = 1.0


@dataclass(frozen=True)
class Plan:
    highs: int  # high-priority notifications per run
    gap: float  # seconds between two of them
    flood_notifications: int  # low-priority notifications in the flood...
    flood_devices: int  # ...each to a user with this many devices

    @property
    def flood_deliveries(self) -> int:
        return self.flood_notifications * self.flood_devices


PLANS = {
    Scale.TINY: Plan(highs=5, gap=0.05, flood_notifications=2, flood_devices=10),
    Scale.FULL: Plan(highs=200, gap=0.05, flood_notifications=20, flood_devices=100),
}


@dataclass
class Run:
    name: str
    seconds: list[float] = field(default_factory=list)  # accepted-to-sent of each high notification
    low_depth_at_start: int = 0
    low_depth_at_end: int = 0
    low_drained: int = 0  # low deliveries deleted from their queue during this run
    high_call_ms: float = 0.0  # mean wait for an AWS call made by the high deliver function
    high_invocation_ms: float = 0.0  # mean duration of a high deliver invocation
    receive_ms: dict[str, float] = field(default_factory=dict)  # queue -> mean ReceiveMessage wait
    wall_seconds: float = 0.0

    def p(self, q: float) -> float:
        return percentile(self.seconds, q)

    def as_json(self) -> dict[str, object]:
        return {
            "samples": len(self.seconds),
            "p50_s": round(self.p(50), 4),
            "p99_s": round(self.p(99), 4),
            "max_s": round(max(self.seconds), 4),
            "low_depth_at_start": self.low_depth_at_start,
            "low_depth_at_end": self.low_depth_at_end,
            "low_drained_during_run": self.low_drained,
            "high_path_aws_call_ms": round(self.high_call_ms, 2),
            "high_invocation_ms": round(self.high_invocation_ms, 2),
            "receive_ms": {queue: round(ms, 2) for queue, ms in self.receive_ms.items()},
            "wall_seconds": round(self.wall_seconds, 1),
        }


def paced_highs(bench: BenchStack, user: str, plan: Plan) -> list[str]:
    ids = []
    next_at = time.monotonic()
    for _ in range(plan.highs):
        ids.append(bench.send([user], "high"))
        next_at += plan.gap
        time.sleep(max(next_at - time.monotonic(), 0))
    return ids


def low_depth(bench: BenchStack, highs_sent: int) -> int:
    """Low deliveries published to the topic and not yet deleted from the low queue, from the
    counter (asking the queue would cost a scan of it). Every high notification is one delivery."""
    tally = bench.counter.snapshot()
    published = sum(
        n
        for key, n in tally.entries.items()
        if key.origin == Origin.HERALD and key.function == "fanout" and key.operation == "PublishBatch"
    )
    return max(published - highs_sent - bench.deleted("LowQueue", tally), 0)


def measure_run(bench: BenchStack, name: str, user: str, plan: Plan, highs_before: int) -> Run:
    """Paced high-priority notifications; `highs_before`: high notifications sent since the reset."""
    run = Run(name)
    mark = bench.counter.snapshot()
    high_before = bench.deleted("HighQueue", mark)
    low_before = bench.deleted("LowQueue", mark)
    invocations_before = len(bench.clock.snapshot())
    run.low_depth_at_start = low_depth(bench, highs_before)
    started = time.perf_counter()
    ids = paced_highs(bench, user, plan)
    run.low_depth_at_end = low_depth(bench, highs_before + plan.highs)
    bench.wait_until(lambda: bench.deleted("HighQueue") >= high_before + plan.highs, timeout=600, what=f"{name} highs")
    run.wall_seconds = time.perf_counter() - started
    run.low_drained = bench.deleted("LowQueue") - low_before
    run.high_call_ms = high_path_call_ms(bench, mark)
    run.receive_ms = receive_ms(bench, mark)
    outcomes = bench.outcomes(ids)
    if any(outcome.status != "sent" or outcome.seconds_to_sent is None for outcome in outcomes):
        raise BenchError(f"{name}: not every high-priority delivery was sent: {outcomes}")
    run.seconds = [outcome.seconds_to_sent for outcome in outcomes if outcome.seconds_to_sent is not None]
    high = bench.deliver_function("high").name
    invocations = [i for i in bench.clock.snapshot()[invocations_before:] if i.function == high]
    run.high_invocation_ms = statistics.fmean(i.seconds for i in invocations) * 1000 if invocations else 0.0
    return run


def high_path_call_ms(bench: BenchStack, since: Tally) -> float:
    """Mean wait for an answer to an AWS call on the high-priority path since `since`: the API's
    calls, the high mapping's receives and deletes, and the high deliver function's calls."""
    tally = bench.counter.snapshot().since(since)
    mapping = next(source.name for source in bench.event_sources() if source.queue == "HighQueue")
    keys = [
        key
        for key in tally.calls
        if key.thread in (mapping, f"poll-{mapping}") or (key.origin == Origin.HERALD and key.function == "api")
    ]
    calls = sum(tally.calls[key] for key in keys)
    return sum(tally.seconds[key] for key in keys) / calls * 1000 if calls else 0.0


def receive_ms(bench: BenchStack, since: Tally) -> dict[str, float]:
    """Mean wait for a ReceiveMessage of the mappings on the high and low queues since `since`:
    what one SQS call costs on the emulator at each queue's depth."""
    tally = bench.counter.snapshot().since(since)
    waits = {}
    for queue in ("HighQueue", "LowQueue"):
        name = bench.ref(queue).rsplit("/", 1)[-1]
        keys = [
            k
            for k in tally.calls
            if k.origin == Origin.POLLER and k.operation == "ReceiveMessage" and k.resource == name
        ]
        calls = sum(tally.calls[k] for k in keys)
        if calls:
            waits[queue] = sum(tally.seconds[k] for k in keys) / calls * 1000
    return waits


class LowFlood:
    """The low-priority flood: its notifications, and how many deliveries they have published."""

    def __init__(self, bench: BenchStack, plan: Plan, tag: str):
        self.bench = bench
        self.plan = plan
        self.users = [f"low-{tag}-{index}" for index in range(plan.flood_notifications)]
        for user in self.users:
            bench.add_devices(user, plan.flood_devices, channel="in_app")

    def send(self) -> None:
        for user in self.users:
            self.bench.send([user], "low")


@dataclass
class Session:
    """The three runs on one backend, and how the flood behaved."""

    backend: Backend
    emulator: str
    runs: list[Run]
    fanout_seconds: float
    drain_seconds: float

    @property
    def ratio(self) -> float:
        idle, draining, _ = self.runs
        return draining.p(99) / idle.p(99)


def measure_session(plan: Plan, backend: Backend) -> Session:
    runs: list[Run] = []
    with running_stack(backend=backend) as bench:
        user = "password-reset"
        bench.add_devices(user, 1, channel="in_app")
        draining_flood = LowFlood(bench, plan, "draining")
        fanout_flood = LowFlood(bench, plan, "fanout")
        warm = [bench.send([user], "high") for _ in range(3)]  # first invocations are not what is measured
        bench.wait_until(lambda: bench.deleted("HighQueue") >= len(warm), timeout=60, what="the warm-up")
        bench.reset()

        progress(f"idle: {plan.highs} high-priority notifications, one every {plan.gap:g} s")
        runs.append(measure_run(bench, "idle", user, plan, highs_before=0))

        progress(f"flood: {plan.flood_deliveries} low-priority deliveries, fanned out before the highs")
        started = time.perf_counter()
        intake_before = bench.deleted("IntakeQueue")
        draining_flood.send()
        bench.wait_until(
            lambda: bench.deleted("IntakeQueue") >= intake_before + plan.flood_notifications,
            timeout=1800,
            what="the flood's fan-out",
        )
        fanout_seconds = time.perf_counter() - started
        progress(f"flood fanned out in {fanout_seconds:.1f} s; highs while it drains")
        drain_started = time.perf_counter()
        runs.append(measure_run(bench, "draining", user, plan, highs_before=plan.highs))
        progress("waiting for the low queue to drain")
        bench.wait_until(
            lambda: bench.deleted("LowQueue") >= plan.flood_deliveries, timeout=1800, what="the flood to drain"
        )
        drain_seconds = time.perf_counter() - drain_started

        progress("fan-out contention: highs right behind a second flood's notifications")
        fanout_flood.send()
        runs.append(measure_run(bench, "fan-out", user, plan, highs_before=2 * plan.highs))
        return Session(backend, bench.emulator, runs, fanout_seconds, drain_seconds)


def session_table(session: Session) -> Table:
    return Table(
        f"High-priority accepted-to-sent (s); AWS answered by {session.emulator}",
        (
            "run",
            "n",
            "p50",
            "p99",
            "max",
            "low depth start/end",
            "low drained",
            "high path call ms",
            "high invocation ms",
            "receive ms high/low",
        ),
        [
            (
                r.name,
                len(r.seconds),
                f"{r.p(50):.3f}",
                f"{r.p(99):.3f}",
                f"{max(r.seconds):.3f}",
                f"{r.low_depth_at_start} / {r.low_depth_at_end}",
                r.low_drained,
                f"{r.high_call_ms:.1f}",
                f"{r.high_invocation_ms:.1f}",
                " / ".join(f"{r.receive_ms[q]:.1f}" if q in r.receive_ms else "-" for q in ("HighQueue", "LowQueue")),
            )
            for r in session.runs
        ],
    )


def session_figures(session: Session, plan: Plan) -> dict[str, object]:
    idle, _, contention = session.runs
    return {
        "emulator": session.emulator,
        "runs": {r.name: r.as_json() for r in session.runs},
        "p99_ratio_draining_to_idle": round(session.ratio, 3),
        "p99_ratio_fanout_to_idle": round(contention.p(99) / idle.p(99), 3),
        "flood_fanout_seconds": round(session.fanout_seconds, 1),
        "flood_drain_seconds": round(session.drain_seconds, 1),
        "low_drain_rate_per_s": round(plan.flood_deliveries / session.drain_seconds, 1),
    }


def session_headline(session: Session, plan: Plan, judged: bool) -> list[str]:
    idle, draining, contention = session.runs
    high_receive = ratio_of(draining.receive_ms.get("HighQueue", 0), idle.receive_ms.get("HighQueue", 0))
    return [
        f"{session.backend.value} ({session.emulator}){'' if judged else ', for information'}: high-priority "
        f"accepted-to-sent idle p50 {idle.p(50):.3f} s, p99 {idle.p(99):.3f} s (n={len(idle.seconds)}); while "
        f"{draining.low_depth_at_start} low deliveries drain p50 {draining.p(50):.3f} s, p99 {draining.p(99):.3f} s: "
        f"p99 {session.ratio:.2f}x idle; behind a flood's fan-out (shared intake) p99 "
        f"{contention.p(99) / idle.p(99):.1f}x idle",
        f"{session.backend.value}: under the flood the high path's AWS calls waited "
        f"{ratio_of(draining.high_call_ms, idle.high_call_ms):.1f}x longer than idle ({idle.high_call_ms:.0f} -> "
        f"{draining.high_call_ms:.0f} ms) and a ReceiveMessage on the shallow high queue {high_receive:.1f}x; one on "
        f"the low queue took {draining.receive_ms.get('LowQueue', 0):.0f} ms; the flood drained at "
        f"{plan.flood_deliveries / session.drain_seconds:.0f} deliveries/s",
    ]


def run(scale: Scale, backend: Backend | None = None) -> Report:
    """On one backend if given (judged); else moto in its own process (judged: the emulator does not
    share Herald's interpreter, as on AWS nothing shares a function's CPU), then in this process, as
    `make run` runs it (for information)."""
    plan = PLANS[scale]
    report = Report("priority", scale)
    backends = [backend] if backend else [Backend.PROCESS, Backend.EMBEDDED]
    sessions = []
    for each in backends:
        progress(f"--- backend: {each.value}")
        sessions.append(measure_session(plan, each))
    judged = sessions[0]
    report.emulator = judged.emulator
    report.tables += [session_table(session) for session in sessions]
    report.figures = {
        "plan": vars(plan) | {"flood_deliveries": plan.flood_deliveries},
        "judged_backend": judged.backend.value,
        "backends": {session.backend.value: session_figures(session, plan) for session in sessions},
    }
    idle = judged.runs[0]
    report.budgets = [
        Budget(f"high p99 while low drains vs idle p99 ({judged.backend.value})", judged.ratio, FLOOD_BUDGET),
        Budget("idle: slowest high sent after accepted", max(idle.seconds), SENT_WITHIN_S, unit=" s"),
    ]
    for session in sessions:
        report.headline += session_headline(session, plan, session is judged)
    report.notes += [
        f"The flood: {plan.flood_notifications} low notifications x {plan.flood_devices} in-app devices = "
        f"{plan.flood_deliveries} deliveries, fanned out before the high run; it drained at "
        + ", ".join(f"{plan.flood_deliveries / s.drain_seconds:.0f}/s ({s.backend.value})" for s in sessions)
        + ".",
        "'high path call ms': mean wait for the answers to the API's calls, the high mapping's receives and deletes "
        "and the high deliver function's calls in that run; 'receive ms': one ReceiveMessage on each queue. "
        "moto scans the whole queue on every SQS call, and in this process it shares the interpreter lock with "
        "Herald's functions: when these grow under the flood while the high queue stays shallow, the emulator "
        "is the limit.",
        "'fan-out' is for information: one intake queue and one fan-out function serve every priority, so a "
        "high notification sent behind a flood of notifications waits for their fan-out.",
    ]
    return report


if __name__ == "__main__":
    sys.exit(main("priority", lambda a: run(a.scale, a.backend), __doc__ or "", backend_option))
