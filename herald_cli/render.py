"""How `herald` shows what it read: Rich tables for a person; `--json` prints the answers as they came."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from herald_local.metrics import MetricSummary

# A notification's statuses no delivery moves on from by itself (dead_lettered: until an operator's redrive).
FINAL_STATES = {"delivered", "partially_delivered", "failed", "dead_lettered", "no_devices"}
STATUS_STYLES = {
    "sent": "green",
    "delivered": "green",
    "queued": "cyan",
    "accepted": "cyan",
    "sending": "cyan",
    "in_progress": "cyan",
    "retrying": "yellow",
    "partially_delivered": "yellow",
    "failed": "red",
    "dead_lettered": "red",
    "no_devices": "red",
}


def age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def queues(view: dict[str, Any]) -> Table:
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue")
    for column in ("visible", "in flight", "dead-lettered"):
        table.add_column(column, justify="right")
    table.add_column("oldest dead letter", justify="right")
    for name, depth in queue_depths(view):
        dead = depth["dead_lettered"]
        table.add_row(
            name,
            str(depth["visible"]),
            str(depth["in_flight"]),
            Text(str(dead), style="red bold" if dead else ""),
            age(depth.get("oldest_dead_letter_age_seconds")),
        )
    return table


def queue_depths(view: dict[str, Any], prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
    """GET /queues' depths by dotted name, in its order: a group of queues (`intake`: one per priority)
    gives `intake.high`, `intake.normal`, `intake.low`."""
    rows: list[tuple[str, dict[str, Any]]] = []
    for name, value in view.items():
        if "visible" in value:
            rows.append((prefix + name, value))
        else:
            rows += queue_depths(value, f"{prefix}{name}.")
    return rows


def _state(value: str) -> Text:
    return Text(value, style=STATUS_STYLES.get(value, ""))


def notification(record: dict[str, Any]) -> RenderableType:
    counts = ", ".join(f"{count} {state}" for state, count in sorted(record.get("counts", {}).items()))
    header = Text.assemble(
        ("notification ", "bold"),
        (record["notification_id"], "bold"),
        ": ",
        _state(record["status"]),
        f"  ({record['priority']} priority; {counts or 'no deliveries yet'})",
    )
    parts: list[RenderableType] = [header]
    for field, what in (
        ("recipients_without_devices", "recipients without devices"),
        ("inactive_devices_skipped", "inactive devices skipped"),
    ):
        if record.get(field):
            # The API lists the first 100 and counts them all.
            count = max(record.get(f"{field}_count", 0), len(record[field]))
            more = f" and {count - len(record[field])} more" if count > len(record[field]) else ""
            parts.append(Text(f"{what}: {', '.join(record[field])}{more}"))
    if record.get("deliveries"):
        table = Table()
        for column in ("user", "device", "channel", "status", "attempts", "redrives", "last error"):
            table.add_column(column, justify="right" if column in {"attempts", "redrives"} else "left")
        for delivery in record["deliveries"]:
            table.add_row(
                delivery["user_id"],
                delivery["device_id"],
                delivery["channel"],
                _state(delivery["status"]),
                str(delivery.get("attempts", 0)),
                str(delivery.get("redrives", 0)),
                delivery.get("last_error") or "",
            )
        parts.append(table)
    if record.get("next_cursor"):
        shown, total = len(record.get("deliveries", [])), record.get("delivery_count", 0)
        parts.append(
            Text(f"the first {shown} of {total} deliveries: GET /notifications/{{id}}/deliveries pages through all")
        )
    return Group(*parts)


def _number(value: float) -> str:
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def metrics(summaries: list[MetricSummary], where: str) -> RenderableType:
    if not summaries:
        return Text(f"No metrics yet from {where}.")
    table = Table(title=f"Metrics from {where}", title_justify="left")
    table.add_column("metric")
    table.add_column("dimensions")
    for column in ("sum", "samples", "average", "max"):
        table.add_column(column, justify="right")
    for summary in summaries:
        dimensions = " ".join(f"{name}={value}" for name, value in summary.dimensions.items() if name != "service")
        unit = " ms" if summary.unit == "Milliseconds" else ""
        table.add_row(
            summary.name,
            dimensions,
            _number(summary.sum) + unit,
            str(summary.samples),
            _number(summary.average) + unit,
            _number(summary.maximum) + unit,
        )
    return table


def redrive(result: dict[str, Any]) -> RenderableType:
    dry_run = result.get("dry_run", False)
    table = Table(title="Redrive, dry run: nothing moved" if dry_run else "Redrive", title_justify="left")
    table.add_column("queue")
    table.add_column("path")
    table.add_column("waiting", justify="right")
    if not dry_run:
        table.add_column("moved", justify="right")
    table.add_column("reasons" if dry_run else "why this path")
    for name, queue in result["queues"].items():
        row = [name, queue["path"], str(queue["waiting"])]
        if not dry_run:
            row.append(str(queue["moved"]))
        row.append("\n".join(queue.get("reasons") or []) if dry_run else (queue.get("note") or ""))
        table.add_row(*row)
    total = f"{result['total_waiting']} waiting" + ("" if dry_run else f", {result['total_moved']} moved")
    return Group(table, Text(total))


def faults(answer: dict[str, Any]) -> RenderableType:
    plan = answer.get("plan")
    status = Text("faults OFF", style="green bold") if plan is None else Text("faults ON", style="red bold")
    parts: list[RenderableType] = [status]
    if plan is not None:
        parts.append(Text(f"plan: {json.dumps(plan)}"))
    counts = answer.get("counts", {})
    table = Table(title="Injected so far", title_justify="left")
    for column in ("channel", "provider calls", "transient", "permanent", "crashes", "latency added"):
        table.add_column(column, justify="left" if column == "channel" else "right")
    for channel, count in counts.get("channels", {}).items():
        table.add_row(
            channel,
            str(count["provider_calls"]),
            str(count["transient"]),
            str(count["permanent"]),
            str(count["crashes"]),
            f"{count['added_latency_ms']:.0f} ms",
        )
    parts.append(table)
    duplicates = sum(counts.get("duplicates", {}).values())
    parts.append(Text(f"queue messages duplicated: {duplicates}"))
    copies = counts.get("concurrent_copies", {}).values()
    if copies:
        handled = sum(c["in_batch"] + c["in_parallel_batch"] for c in copies)
        parts.append(
            Text(f"messages handled with concurrent copies: {sum(c['messages'] for c in copies)} ({handled} copies)")
        )
    return Group(*parts)
