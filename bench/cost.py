"""Herald's own overhead per million notifications: calls counted on the local stack, times a dated price
table, with Lambda durations from a stated model. The same code gives the same figure on every run.

Each case sends notifications (normal priority) over HTTP to one user with the case's devices, then
drives the event source mappings one batch at a time (bench/lockstep.py): every AWS call is counted
with the units it bills as (bench/capacity.py), every invocation with its records. The bill is
computed from that recording alone: prices from bench/prices.py, Lambda durations from
bench/durations.py (CPU per invocation, record and call, stretched by each function's MemorySize
from template.yaml, plus each call's wait), batches from the template and a stated arrival rate.
Nothing is timed, so the machine's load does not move the figure.

`python -m bench.cost [--scale tiny|full]`. Budgets: Herald's own overhead (API Gateway and provider
fees shown apart) at most $4.00 per million notifications with 3 push devices each, at most $2.50
with 1 in-app device each.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

from bench.capacity import DYNAMODB_READS, DYNAMODB_WRITES
from bench.durations import MODEL, WAIT_MS, DurationModel, Work, cpu_stretch, gb_seconds
from bench.levers import BEYOND, LEVERS, Lever, path_of
from bench.lockstep import (
    ARRIVALS_PER_SECOND,
    Invocation,
    Lockstep,
    Recording,
    mapping_calls,
    provider_calls,
)
from bench.prices import (
    OWN_LINES,
    PRICES,
    PRICES_AS_OF,
    REGION,
    REST_API,
    Prices,
    Usage,
    api_gateway,
    own_overhead,
    provider_fees,
)
from bench.report import BenchError, Budget, Report, Scale, Table, main, progress
from bench.stack import Backend, BenchStack, backend_option, running_stack

PRIORITY = "normal"
# Tiny: one intake batch of 10 notifications, as the full run's batches are
NOTIFICATIONS = {Scale.TINY: 10, Scale.FULL: 100}
# A notification as a shop would send it: a short title and a text-message-sized body.
TITLE = "Your order has shipped"
BODY = "Order 1042 left our warehouse this morning and should reach you on Thursday. Track it in the app."
ALL_LEVERS = (*LEVERS, *BEYOND)
PROVIDER_OPERATIONS = {("sns", "Publish"), ("ses", "SendEmail"), ("ses", "SendRawEmail")}


@dataclass(frozen=True)
class Case:
    name: str
    devices: int
    channel: str  # push or in_app
    idempotency_key: bool = False  # each POST carries its own Idempotency-Key
    budget: float | None = None  # USD per million notifications of Herald's own overhead


THREE_PUSH = Case("3 push devices each", 3, "push", budget=4.00)
ONE_IN_APP = Case("1 in_app device each", 1, "in_app", budget=2.50)
CASES = {
    Scale.TINY: (THREE_PUSH, ONE_IN_APP),
    Scale.FULL: (
        THREE_PUSH,
        ONE_IN_APP,
        Case("1 push device each", 1, "push"),
        Case("3 push devices each, with Idempotency-Key", 3, "push", idempotency_key=True),
    ),
}


# --- recording ----------------------------------------------------------------------------------------


def function_configuration() -> tuple[dict[str, int], dict[str, str]]:
    """Each function's MemorySize and architecture, from template.yaml (Globals applied)."""
    from herald_local.template import HeraldTemplate

    template = HeraldTemplate.load()
    memory, architecture = {}, {}
    for name, resource in template.resources.items():
        if resource["Type"] != "AWS::Lambda::Function":
            continue
        properties = resource["Properties"]
        memory[name] = int(template.default_of(properties.get("MemorySize", 128)))
        architecture[name] = str(properties.get("Architectures", ["x86_64"])[0])
    return memory, architecture


def record_case(
    bench: BenchStack, case: Case, notifications: int, configuration: tuple[dict[str, int], dict[str, str]]
) -> Recording:
    """Sends `notifications` notifications of this case and drives them to their last delivery in lockstep.
    `configuration`: each function's memory and architecture (function_configuration())."""
    user = f"user-{case.devices}-{case.channel}{'-keyed' if case.idempotency_key else ''}"
    bench.add_devices(user, case.devices, channel=case.channel)
    bench.reset()
    lockstep = Lockstep(bench)
    api = bench.function("api.").name
    for index in range(notifications):
        key = f"{user}-{index}" if case.idempotency_key else None
        lockstep.record_api(partial(bench.send, [user], PRIORITY, title=TITLE, body=BODY, idempotency_key=key), api)
    deliveries = notifications * case.devices
    lockstep.drain(notifications, lambda invocations: provider_calls(invocations) >= deliveries)
    made = provider_calls(lockstep.invocations)
    if made != deliveries:
        raise BenchError(f"{case.name}: {made} provider calls for {deliveries} deliveries (retries or duplicates)")
    memory, architecture = configuration
    return Recording(
        case=case.name,
        notifications=notifications,
        deliveries=deliveries,
        invocations=tuple(lockstep.invocations),
        mapping=mapping_calls(bench.counter.snapshot(), bench.role),
        memory_mb=memory,
        architecture=architecture,
        fills=dict(lockstep.fills),
    )


# --- the bill -----------------------------------------------------------------------------------------


def work_of(invocation: Invocation) -> Work:
    calls: dict[tuple[str, str, str], int] = defaultdict(int)
    for c in invocation.calls:
        calls[(c.service, c.operation, c.resource)] += c.calls
    return Work(invocation.function, invocation.records, calls, invocation.lanes)


def is_provider_call(service: str, operation: str) -> bool:
    return (service, operation) in PROVIDER_OPERATIONS


def usage_of(recording: Recording, model: DurationModel = MODEL) -> Usage:
    """What one notification of this recording uses, in billing units."""
    writes = reads = sqs = sns = push = sms = emails = 0.0
    compute: dict[str, float] = defaultdict(float)
    for invocation in recording.invocations:
        for c in invocation.calls:
            if c.service == "dynamodb" and c.operation in DYNAMODB_WRITES:
                writes += c.units
            elif c.service == "dynamodb" and c.operation in DYNAMODB_READS:
                reads += c.units
            elif c.service == "sqs":
                sqs += c.units
            elif c.service == "sns" and c.operation == "Publish" and c.resource == "endpoint":
                push += c.calls
            elif c.service == "sns" and c.operation == "Publish" and c.resource == "phone":
                sms += c.calls
            elif c.service == "sns":
                sns += c.units
            elif c.service == "ses":
                emails += c.calls
        memory = recording.memory_mb[invocation.function]
        billed = model.billed_ms(work_of(invocation), memory)
        compute[recording.architecture[invocation.function]] += gb_seconds(billed, memory)
    sqs += sum(c.units for c in recording.mapping if c.service == "sqs")
    n = recording.notifications
    return Usage(
        dynamodb_write_units=writes / n,
        dynamodb_read_units=reads / n,
        sqs_requests=sqs / n,
        sns_requests=sns / n,
        lambda_invocations=len(recording.invocations) / n,
        lambda_gb_seconds={arch: gb_s / n for arch, gb_s in sorted(compute.items())},
        api_requests=sum(1 for i in recording.invocations if i.handler == "api") / n,
        push_publishes=push / n,
        sms_publishes=sms / n,
        emails=emails / n,
    )


@dataclass(frozen=True)
class Bill:
    """USD per million notifications: Herald's own overhead by line, and what is shown apart."""

    own: dict[str, float]
    api: dict[str, float]
    providers: dict[str, float]
    usage: Usage

    @property
    def total(self) -> float:
        return sum(self.own.values())


def bill_of(recording: Recording, prices: Prices = PRICES, model: DurationModel = MODEL) -> Bill:
    usage = usage_of(recording, model)
    return Bill(own_overhead(usage, prices), api_gateway(usage, prices), provider_fees(usage, prices), usage)


def money_by_call(
    recording: Recording, prices: Prices = PRICES, model: DurationModel = MODEL
) -> list[tuple[str, float]]:
    """Where Herald's own overhead goes: USD per million notifications by call and by function,
    largest first (provider calls are fees, shown apart)."""
    n = recording.notifications
    usd: dict[str, float] = defaultdict(float)
    for invocation in recording.invocations:
        for c in invocation.calls:
            if is_provider_call(c.service, c.operation):
                continue
            usd[f"{invocation.handler}: {c.service} {c.operation} {c.resource}"] += unit_price(c, prices) * c.units / n
        memory = recording.memory_mb[invocation.function]
        billed = model.billed_ms(work_of(invocation), memory)
        price = prices.lambda_per_gb_second[recording.architecture[invocation.function]]
        usd[f"{invocation.handler}: Lambda compute"] += gb_seconds(billed, memory) * price * 1_000_000 / n
        usd[f"{invocation.handler}: Lambda request"] += prices.lambda_per_million_requests / n
    for c in recording.mapping:
        usd[f"mapping: {c.service} {c.operation} {c.resource}"] += unit_price(c, prices) * c.units / n
    return sorted(usd.items(), key=lambda item: (-item[1], item[0]))


def unit_price(call: Any, prices: Prices) -> float:
    """USD per million of a call's billing units."""
    if call.service == "dynamodb":
        if call.operation in DYNAMODB_WRITES:
            return prices.dynamodb_per_million_write_units
        return prices.dynamodb_per_million_read_units
    if call.service == "sqs":
        return prices.sqs_per_million_requests
    if call.service == "sns":
        return prices.sns_per_million_requests
    return 0.0


# --- the report ---------------------------------------------------------------------------------------


def money(value: float) -> str:
    return f"{value:.2f}"


def saving(value: float) -> str:
    """A lever's effect on the overhead: -0.32 saves, +0.59 costs more."""
    return f"{-value:+.2f}"


def overhead_table(cases: list[Case], bills: Mapping[str, Bill]) -> Table:
    rows: list[tuple[object, ...]] = [(line, *(money(bills[c.name].own[line]) for c in cases)) for line in OWN_LINES]
    rows.append(("Herald's own overhead", *(money(bills[c.name].total) for c in cases)))
    rows.append(("budget", *(money(c.budget) if c.budget is not None else "-" for c in cases)))
    return Table(
        f"Herald's own overhead, USD per million notifications ({REGION}, list prices of {PRICES_AS_OF})",
        ("line", *(c.name for c in cases)),
        rows,
    )


def apart_table(cases: list[Case], bills: Mapping[str, Bill]) -> Table:
    first = bills[cases[0].name]
    rows: list[tuple[object, ...]] = []
    for line in first.api:
        rows.append((line, *(money(bills[c.name].api[line]) for c in cases)))
    for line in first.providers:
        rows.append((line, *(money(bills[c.name].providers[line]) for c in cases)))
    rows.append(
        (
            "own overhead + REST API + provider fees",
            *(
                money(bills[c.name].total + bills[c.name].api[REST_API] + sum(bills[c.name].providers.values()))
                for c in cases
            ),
        )
    )
    return Table("Shown apart, USD per million notifications", ("line", *(c.name for c in cases)), rows)


def usage_table(cases: list[Case], bills: Mapping[str, Bill], recordings: Mapping[str, Recording]) -> Table:
    def per(case: Case) -> Usage:
        return bills[case.name].usage

    rows: list[tuple[object, ...]] = [
        ("DynamoDB write units", *(f"{per(c).dynamodb_write_units:.2f}" for c in cases)),
        ("DynamoDB read units", *(f"{per(c).dynamodb_read_units:.2f}" for c in cases)),
        ("SQS requests", *(f"{per(c).sqs_requests:.2f}" for c in cases)),
        ("SNS publish requests (topic)", *(f"{per(c).sns_requests:.2f}" for c in cases)),
        ("Lambda invocations", *(f"{per(c).lambda_invocations:.2f}" for c in cases)),
        ("Lambda GB-s (x 1000)", *(f"{sum(per(c).lambda_gb_seconds.values()) * 1000:.2f}" for c in cases)),
        ("notifications recorded", *(recordings[c.name].notifications for c in cases)),
    ]
    return Table("Billing units per notification", ("unit", *(c.name for c in cases)), rows)


def where_table(case: Case, recording: Recording) -> Table:
    items = money_by_call(recording)
    total = sum(usd for _, usd in items)
    rows = [(what, money(usd), f"{usd / total:.0%}") for what, usd in items if usd >= 0.005]
    return Table(f"Where the money goes, {case.name} (USD per million notifications)", ("call", "USD", "share"), rows)


def duration_table(recordings: Mapping[str, Recording], model: DurationModel = MODEL) -> Table:
    rows = []
    for name, recording in recordings.items():
        by_function: dict[str, list[Invocation]] = defaultdict(list)
        for invocation in recording.invocations:
            by_function[invocation.function].append(invocation)
        for function, invocations in sorted(by_function.items()):
            memory = recording.memory_mb[function]
            ms = [model.duration_ms(work_of(i), memory) for i in invocations]
            records = sum(i.records for i in invocations) / len(invocations)
            rows.append(
                (
                    name,
                    function,
                    memory,
                    f"{len(invocations) / recording.notifications:.2f}",
                    f"{records:.1f}",
                    f"{sum(ms) / len(ms):.0f}",
                )
            )
    return Table(
        "Lambda durations by the model",
        ("case", "function", "MB", "invocations/notif", "records/invocation", "modelled ms"),
        rows,
    )


def lever_table(cases: list[Case], recordings: Mapping[str, Recording], levers: tuple[Lever, ...]) -> Table:
    paths = {case.name: path_of(recordings[case.name], levers, bill_of) for case in cases}
    rows = []
    for index, lever in enumerate(levers):
        label = lever.name if lever in LEVERS else f"(beyond) {lever.name}"
        rows.append(
            (label, *(f"{saving(paths[c.name][index].saves)} = {money(paths[c.name][index].total)}" for c in cases))
        )
    return Table(
        "Levers by the model, each on top of those above: saves = Herald's own overhead after it (USD per million)",
        ("lever", *(c.name for c in cases)),
        rows,
    )


def trade_off_table(levers: tuple[Lever, ...]) -> Table:
    return Table(
        "What each lever would cost besides", ("lever", "trade-off"), [(lv.name, lv.trade_off) for lv in levers]
    )


def model_notes(memory: Mapping[str, int], model: DurationModel = MODEL) -> list[str]:
    sizes = ", ".join(f"{name} {mb} MB" for name, mb in sorted(memory.items()))
    waits = ", ".join(
        f"{service}{' ' + resource if resource else ''} {ms:g}" for (service, resource), ms in WAIT_MS.items()
    )
    stretch = cpu_stretch(min(memory.values())) if memory else 1.0
    return [
        f"Prices: {REGION} list prices read {PRICES_AS_OF} (bench/prices.py); free tiers ignored. SNS's deliveries "
        "into the priority queues are not billed as SQS requests (SNS to SQS carries no charge); were they, "
        "add $0.40 per million per delivery.",
        f"Lambda durations are modelled (bench/durations.py), never timed: CPU {model.invocation_cpu_ms:g} ms per "
        f"invocation + {model.record_cpu_ms:g} ms per record + {model.call_cpu_ms:g} ms per AWS call at one vCPU, "
        f"stretched x{stretch:.1f} at {min(memory.values()) if memory else 0} MB; plus each call's wait in ms "
        f"({waits}), a deliver batch's waits overlapping across its parallel sends. Memory: {sizes}.",
        f"Batches: a mapping without a batching window hands its function one message; one with a window a full "
        f"batch at {ARRIVALS_PER_SECOND:g} notifications a second (bench/lockstep.py). Receives and deletes: what "
        "the mapping made, one per batch of up to 10, empty receives left out (on AWS they cost per hour of "
        "polling, not per notification). A fan-out publishes its PublishBatch calls one after another "
        "(FanoutParallelPublishes=1), so its jobs queue in the order planned and every run cuts the same "
        "deliver batches.",
        "DynamoDB units from the items' sizes (1 KB per write unit, larger of before and after; 4 KB per read "
        "unit, half for eventually consistent); moto's ReturnConsumedCapacity is a constant, so it is not used.",
    ]


# A fan-out's PublishBatch calls one after another, so its jobs reach the priority queue in the order it
# planned them, and the deliver batches (10 messages each) cut the same notifications on every run. With
# calls in parallel (the template's default of 8) that order, and so the number of status writes (one per
# recipient per batch), varies from run to run by up to 0.2 write units per notification with 3 devices.
IN_ORDER = {"FanoutParallelPublishes": "1"}


def run(scale: Scale, backend: Backend = Backend.EMBEDDED) -> Report:
    report = Report("cost", scale)
    cases = list(CASES[scale])
    recordings: dict[str, Recording] = {}
    configuration = function_configuration()
    with running_stack(IN_ORDER, backend=backend, item_images=True) as bench:
        report.emulator = bench.emulator
        for case in cases:
            progress(f"{case.name}: {NOTIFICATIONS[scale]} notifications, one batch at a time")
            recordings[case.name] = record_case(bench, case, NOTIFICATIONS[scale], configuration)
    bills = {name: bill_of(recording) for name, recording in recordings.items()}
    judged = [case for case in cases if case.budget is not None]
    report.tables += [
        overhead_table(cases, bills),
        apart_table(cases, bills),
        usage_table(cases, bills, recordings),
        *(where_table(case, recordings[case.name]) for case in judged),
        duration_table(recordings),
        lever_table(cases, recordings, ALL_LEVERS),
        trade_off_table(ALL_LEVERS),
    ]
    report.budgets = [
        Budget(f"own overhead, {case.name}", bills[case.name].total, case.budget, unit=" USD")
        for case in judged
        if case.budget is not None
    ]
    report.figures = figures_of(cases, recordings, bills)
    for case in cases:
        bill = bills[case.name]
        lines = ", ".join(f"{line} {money(bill.own[line])}" for line in OWN_LINES)
        verdict = "" if case.budget is None else f"; budget ${case.budget:.2f}"
        report.headline.append(
            f"{case.name}: ${bill.total:.2f} per million notifications of Herald's own overhead ({lines}){verdict}; "
            f"apart: REST API {money(bill.api[REST_API])}, provider fees {money(sum(bill.providers.values()))}"
        )
    report.notes += model_notes(next(iter(recordings.values())).memory_mb)
    return report


def figures_of(cases: list[Case], recordings: Mapping[str, Recording], bills: Mapping[str, Bill]) -> dict[str, Any]:
    figures: dict[str, Any] = {
        "prices_as_of": PRICES_AS_OF,
        "region": REGION,
        "priority": PRIORITY,
        "arrivals_per_second": ARRIVALS_PER_SECOND,
        "duration_model": {
            "invocation_cpu_ms": MODEL.invocation_cpu_ms,
            "record_cpu_ms": MODEL.record_cpu_ms,
            "call_cpu_ms": MODEL.call_cpu_ms,
            "wait_ms": {f"{service} {resource}".strip(): ms for (service, resource), ms in WAIT_MS.items()},
        },
        "cases": {},
    }
    for case in cases:
        recording, bill = recordings[case.name], bills[case.name]
        figures["cases"][case.name] = {
            "notifications": recording.notifications,
            "budget": case.budget,
            "own_overhead": round(bill.total, 4),
            "lines": {line: round(bill.own[line], 4) for line in OWN_LINES},
            "api_gateway": {line: round(usd, 4) for line, usd in bill.api.items()},
            "provider_fees": {line: round(usd, 4) for line, usd in bill.providers.items()},
            "usage_per_notification": {
                "dynamodb_write_units": round(bill.usage.dynamodb_write_units, 4),
                "dynamodb_read_units": round(bill.usage.dynamodb_read_units, 4),
                "sqs_requests": round(bill.usage.sqs_requests, 4),
                "sns_requests": round(bill.usage.sns_requests, 4),
                "lambda_invocations": round(bill.usage.lambda_invocations, 4),
                "lambda_gb_seconds": {arch: round(v, 6) for arch, v in bill.usage.lambda_gb_seconds.items()},
            },
            "fills": dict(recording.fills),
            "by_call": {what: round(usd, 4) for what, usd in money_by_call(recording)},
            "levers": [
                {"lever": step.lever.name, "saves": round(step.saves, 4), "then": round(step.total, 4)}
                for step in path_of(recording, ALL_LEVERS, bill_of)
            ],
        }
    return figures


if __name__ == "__main__":
    sys.exit(main("cost", lambda a: run(a.scale, a.backend or Backend.EMBEDDED), __doc__ or "", backend_option))
