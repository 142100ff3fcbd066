"""Cost model: the AWS bill per million notifications (3 push devices each, and 1), by service, from
the calls counted and the handler durations measured on the local stack (bench/requests.py), at the
list prices of bench/prices.py; REST vs HTTP API, with and without idempotency records; beside the
same deliveries published straight to SNS mobile push.

`python -m bench.cost [--scale tiny|full]`. No budget: figures to read.
"""

from __future__ import annotations

import math
import sys
from collections import defaultdict
from typing import Any

from bench.floor import INTAKE_DELETE, INTAKE_RECEIVE, PRIORITY_DELETE, PRIORITY_RECEIVE
from bench.prices import (
    PRICES_AS_OF,
    REGION,
    ApiKind,
    Usage,
    bill_per_million,
    gb_seconds,
    push_alone_per_million,
)
from bench.report import Report, Scale, Table, main, progress
from bench.requests import NOTIFICATIONS, Measurement, measure
from bench.stack import Backend, backend_option, running_stack

DEVICE_COUNTS = (3, 1)
DYNAMODB_WRITES = {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem"}
DYNAMODB_READS = {"Query", "GetItem"}
READ_UNITS_PER_PAGE = 0.5  # an eventually consistent read of up to 4 KB


def usage_of(m: Measurement, memory_mb: int) -> Usage:
    """What one notification used in this measurement, in billing units.

    Assumptions: every SQS and SNS payload is under 64 KB (one request each); every item written is
    under 1 KB (one write unit per item); every read is one page under 4 KB, eventually consistent;
    each delivery SNS makes from the topic into a priority queue counts as one SQS request (SNS does
    not charge for it; counting it keeps the model on the safe side).
    """
    n = m.notifications
    calls: dict[tuple[str, str], float] = defaultdict(float)
    entries: dict[tuple[str, str], float] = defaultdict(float)
    push = 0.0
    for (_, service, operation, role), count in m.herald_calls.items():
        calls[(service, operation)] += count
        if service == "sns" and operation == "Publish" and role == "endpoint":
            push += count
    for (_, service, operation, _role), count in m.herald_entries.items():
        entries[(service, operation)] += count
    invocations = [invocation for runs in m.invocations.values() for invocation in runs]
    billed_ms = sum(math.ceil(invocation.seconds * 1000) for invocation in invocations)
    mapping = sum(m.lines[line] for line in (INTAKE_RECEIVE, INTAKE_DELETE, PRIORITY_RECEIVE, PRIORITY_DELETE))
    herald_sqs = sum(count for (service, _), count in calls.items() if service == "sqs")
    return Usage(
        api_requests=1,
        lambda_invocations=len(invocations) / n,
        lambda_gb_seconds=gb_seconds(billed_ms, memory_mb) / n,
        sqs_requests=(herald_sqs + mapping) / n + m.shape.deliveries,
        sns_publishes=calls[("sns", "PublishBatch")] / n,
        push_deliveries=push / n,
        dynamodb_write_units=sum(entries[("dynamodb", op)] for op in DYNAMODB_WRITES) / n,
        # a BatchGetItem (fan-out's preferences) is billed per item read, not per call
        dynamodb_read_units=(
            sum(calls[("dynamodb", op)] for op in DYNAMODB_READS) + entries[("dynamodb", "BatchGetItem")]
        )
        * READ_UNITS_PER_PAGE
        / n,
    )


def function_configuration() -> tuple[int, str]:
    """Memory and architecture of the functions, from template.yaml (its Globals)."""
    from herald_local.template import HeraldTemplate

    functions = [
        r["Properties"] for r in HeraldTemplate.load().resources.values() if r["Type"] == "AWS::Lambda::Function"
    ]
    memory = {int(f.get("MemorySize", 128)) for f in functions}
    architectures = {tuple(f.get("Architectures", ["x86_64"])) for f in functions}
    if len(memory) != 1 or len(architectures) != 1:
        raise ValueError(f"functions differ in memory {memory} or architecture {architectures}")
    return memory.pop(), architectures.pop()[0]


def bills(m: Measurement, memory_mb: int) -> dict[str, Any]:
    usage = usage_of(m, memory_mb)
    variants = {}
    for api in ApiKind:
        for idempotent in (False, True):
            by_service = bill_per_million(usage.with_idempotency_records() if idempotent else usage, api)
            variants[f"{api.name.lower()}{'_idempotent' if idempotent else ''}"] = by_service
    return {"usage": usage, "variants": variants, "push_alone": push_alone_per_million(m.shape.deliveries)}


def bill_table(results: dict[int, dict[str, Any]]) -> Table:
    columns = [(devices, api) for devices in results for api in ApiKind]
    services = list(results[next(iter(results))]["variants"]["rest"])
    rows: list[tuple[object, ...]] = []
    for service in services:
        rows.append((service, *(f"{results[d]['variants'][api.name.lower()][service]:.2f}" for d, api in columns)))
    totals = [sum(results[d]["variants"][api.name.lower()].values()) for d, api in columns]
    idempotent = [sum(results[d]["variants"][f"{api.name.lower()}_idempotent"].values()) for d, api in columns]
    alone = [results[d]["push_alone"] for d, _ in columns]
    rows += [
        ("Total", *(f"{t:.2f}" for t in totals)),
        ("Total with idempotency records", *(f"{t:.2f}" for t in idempotent)),
        ("SNS mobile push alone (same deliveries)", *(f"{a:.2f}" for a in alone)),
        ("Herald / push alone", *(f"{t / a:.1f}x" for t, a in zip(totals, alone, strict=True))),
    ]
    return Table(
        f"USD per million notifications ({REGION}, list prices of {PRICES_AS_OF})",
        ("service", *(f"{d} dev, {api.value}" for d, api in columns)),
        rows,
    )


def duration_table(measurements: dict[int, Measurement]) -> Table:
    rows = []
    for devices, m in measurements.items():
        for function, runs in sorted(m.invocations.items()):
            mean_ms = sum(r.seconds for r in runs) / len(runs) * 1000
            rows.append((devices, function, f"{len(runs) / m.notifications:.3f}", f"{mean_ms:.1f}"))
    return Table(
        "Invocations per notification and their measured duration (embedded stack)",
        ("devices", "function", "invocations/notif", "mean ms"),
        rows,
    )


def run(scale: Scale, backend: Backend = Backend.EMBEDDED) -> Report:
    report = Report("cost", scale)
    memory_mb, architecture = function_configuration()
    measurements: dict[int, Measurement] = {}
    with running_stack(backend=backend) as bench:
        report.emulator = bench.emulator
        for devices in DEVICE_COUNTS:
            notifications = NOTIFICATIONS[scale].get(devices, 2)
            progress(f"{notifications} notifications to a user with {devices} devices")
            measurements[devices] = measure(bench, devices, notifications)
    results = {devices: bills(m, memory_mb) for devices, m in measurements.items()}
    report.tables += [bill_table(results), duration_table(measurements)]
    report.figures = {
        "prices_as_of": PRICES_AS_OF,
        "region": REGION,
        "memory_mb": memory_mb,
        "architecture": architecture,
        "per_million_notifications": {
            f"{devices}_devices": {
                "usage_per_notification": {k: round(v, 4) for k, v in vars(r["usage"]).items()},
                "total": {variant: round(sum(lines.values()), 2) for variant, lines in r["variants"].items()},
                "by_service": {
                    variant: {k: round(v, 3) for k, v in lines.items()} for variant, lines in r["variants"].items()
                },
                "sns_mobile_push_alone": round(r["push_alone"], 2),
            }
            for devices, r in results.items()
        },
    }
    for devices, r in results.items():
        totals = {variant: sum(lines.values()) for variant, lines in r["variants"].items()}
        report.headline.append(
            f"{devices} push device{'s' if devices > 1 else ''} per notification: ${totals['http']:.2f} (HTTP API) to "
            f"${totals['rest_idempotent']:.2f} (REST API, idempotency records) per million notifications; SNS mobile "
            f"push alone ${r['push_alone']:.2f}: {totals['http'] / r['push_alone']:.1f}x to "
            f"{totals['rest_idempotent'] / r['push_alone']:.1f}x"
        )
    report.notes += [
        f"Assumptions: Lambda {memory_mb} MB on {architecture} (template.yaml Globals); billed duration = each "
        "invocation's duration measured on the embedded stack, rounded up to the millisecond (AWS calls there "
        "take about a millisecond; on AWS they take more, so read Lambda's line as a lower bound).",
        "Every payload under 64 KB and every item under 1 KB; device reads one 4 KB page, eventually consistent; "
        "each SNS-to-SQS delivery counted as an SQS request (safe side); free tiers, CloudWatch Logs, X-Ray and "
        "data transfer not included.",
        "Idempotency records: one conditional PutItem and one UpdateItem per notification (2 write units).",
        "A direct publish to a mobile endpoint is billed as one SNS publish and one mobile push delivery, in "
        "Herald and in 'SNS mobile push alone' alike.",
    ]
    return report


if __name__ == "__main__":
    sys.exit(main("cost", lambda a: run(a.scale, a.backend or Backend.EMBEDDED), __doc__ or "", backend_option))
