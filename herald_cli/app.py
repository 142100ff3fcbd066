"""`herald`: operate Herald from a terminal: run a function, redrive dead letters, read queues, statuses, metrics."""

# No `from __future__ import annotations`: Typer reads the parameters' annotations at run time.

import io
import json
import sys
import threading
import time
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import requests
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from herald_cli import render
from herald_cli.invoke import UnknownFunction, run_function
from herald_cli.targets import (
    DeployedTarget,
    LocalTarget,
    Target,
    TargetError,
    answer_of,
    dead_letter_queues_of,
)
from herald_local import stack_file
from herald_local.stack_file import StackFile

app = typer.Typer(
    help=(
        "Operate Herald. Talks to the running local stack (`make run`; it reads the stack file the stack"
        " writes) unless --stack-name names a deployed stack (it reads that stack's CloudFormation outputs)."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
faults_app = typer.Typer(
    help="Switch the local stack's fault injector on and off while it runs (docs/local-stack.md).",
    no_args_is_help=True,
)
app.add_typer(faults_app, name="faults")

# Piped or redirected, tables get room instead of a terminal's 80 columns.
out = Console(width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


class Selection(StrEnum):
    """What DlqRedriveFunction's `priority` accepts: a priority's delivery DLQ, a lane's fan-out DLQ, or groups."""

    all = "all"
    high = "high"
    normal = "normal"
    low = "low"
    intake = "intake"
    intake_high = "intake-high"
    intake_normal = "intake-normal"
    intake_low = "intake-low"
    schedule = "schedule"
    feedback = "feedback"


class ChannelChoice(StrEnum):
    email = "email"
    sms = "sms"
    push = "push"
    in_app = "in_app"


@dataclass
class Where:
    stack_file: Path
    stack_name: str | None
    region: str | None

    def local(self) -> StackFile:
        if self.stack_name:
            raise TargetError("this command runs against the local stack only; leave out --stack-name")
        if not self.stack_file.exists():
            raise TargetError(
                f"no local stack: {self.stack_file} does not exist. Start one with `make run`"
                " (or .venv/bin/python -m herald_local), or name a deployed stack with --stack-name"
            )
        stack = stack_file.running(self.stack_file)
        if stack is None:
            raise TargetError(f"{self.stack_file} is left from a local stack that no longer runs: start one")
        return stack

    def target(self) -> Target:
        if self.stack_name:
            return DeployedTarget(self.stack_name, self.region)
        return LocalTarget(self.local())


def _where(context: typer.Context) -> Where:
    where: Where = context.obj
    return where


def _print_json(value: Any) -> None:
    out.print_json(json.dumps(value, default=str))


@app.callback()
def options(
    context: typer.Context,
    stack_file_path: Annotated[
        Path | None,
        typer.Option(
            "--stack-file",
            envvar=stack_file.ENVIRONMENT_VARIABLE,
            help="The local stack's stack file (default: .herald-local/stack.json in the checkout).",
        ),
    ] = None,
    stack_name: Annotated[
        str | None, typer.Option("--stack-name", help="A deployed stack (sam deploy's stack name) instead.")
    ] = None,
    region: Annotated[str | None, typer.Option("--region", help="The deployed stack's region.")] = None,
) -> None:
    context.obj = Where(stack_file_path or stack_file.DEFAULT_PATH, stack_name, region)


@app.command()
def invoke(
    context: typer.Context,
    function: Annotated[str, typer.Argument(help="The function's logical id in template.yaml: FanoutHighFunction...")],
    event: Annotated[Path, typer.Option("--event", "-e", help="The event: a JSON file (events/...), or - for stdin.")],
    log_level: Annotated[str | None, typer.Option(help="POWERTOOLS_LOG_LEVEL for this run.")] = None,
) -> None:
    """Run one function on an event against the running local stack, as `sam local invoke` does in a container.

    The handler runs in this process with the function's environment from template.yaml (resolved
    against the stack). Its log lines go to stderr, its answer to stdout; exit code 1 if it raised.
    """
    stack = _where(context).local()
    payload = json.loads(sys.stdin.read() if str(event) == "-" else event.read_text())
    if function in stack.functions:
        handler = stack.functions[function].handler
        invoking = f"Invoking {handler} ({function}) against the local stack at {stack.api_url}"
        err.print(invoking, highlight=False, soft_wrap=True)
    invocation = run_function(stack, function, payload, sys.stderr, log_level)
    err.print(f"END RequestId: {invocation.request_id}", highlight=False, soft_wrap=True)
    report = f"REPORT RequestId: {invocation.request_id}\tDuration: {invocation.duration_ms:.2f} ms"
    err.print(report, highlight=False, soft_wrap=True)
    print(json.dumps(invocation.error if invocation.error else invocation.result, indent=2, default=str))
    if invocation.error:
        raise typer.Exit(1)


def _depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attributes.get(name, 0)) for name in names)


@app.command()
def redrive(
    context: typer.Context,
    priority: Annotated[
        Selection,
        typer.Option(
            help=(
                "Which dead-letter queue: a priority's delivery DLQ, intake-<priority> (that lane's fan-out DLQ),"
                " intake (the three fan-out DLQs), schedule (held notifications and deliveries), feedback (SES"
                " bounces and complaints), or all eight."
            )
        ),
    ] = Selection.all,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say how many wait, and why; move nothing.")] = False,
    limit: Annotated[int | None, typer.Option(min=1, help="At most this many messages per queue.")] = None,
    rate: Annotated[int | None, typer.Option(min=1, max=500, help="At most this many messages per second.")] = None,
    wait_seconds: Annotated[int, typer.Option(min=0, max=900, help="How long the function waits for moves.")] = 60,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show the function's log lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the function's answer as JSON.")] = False,
) -> None:
    """Move dead letters back to their queues (DlqRedriveFunction), with a progress bar while they move."""
    target = _where(context).target()
    request: dict[str, Any] = {"priority": priority.value, "dry_run": dry_run, "wait_seconds": wait_seconds}
    if limit is not None:
        request["limit"] = limit
    if rate is not None:
        request["rate"] = rate
    log: io.StringIO | Any = sys.stderr if verbose else io.StringIO()
    # A dry run moves nothing: no bar to show.
    result = target.redrive(request, log) if dry_run else _redrive_with_progress(target, request, priority, limit, log)
    if as_json:
        _print_json(result)
    else:
        out.print(render.redrive(result))


def _redrive_with_progress(
    target: Target, request: dict[str, Any], priority: Selection, limit: int | None, log: Any
) -> dict[str, Any]:
    """Runs the redrive while watching the dead-letter queues drain: the bar counts what left them."""
    urls = target.dead_letter_queues()
    chosen = dead_letter_queues_of(priority.value)
    sqs = target.sqs()
    before = {name: _depth(sqs, urls[name]) for name in chosen}
    total = sum(min(depth, limit) if limit else depth for depth in before.values())
    answer: dict[str, Any] = {}
    failure: list[BaseException] = []

    def run() -> None:
        try:
            answer.update(target.redrive(request, log))
        except BaseException as error:
            failure.append(error)

    worker = threading.Thread(target=run, name="redrive", daemon=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=err, transient=False) as progress:
        task = progress.add_task(f"redriving {priority.value}", total=total)
        worker.start()
        while worker.is_alive():
            worker.join(0.25)
            left = {name: _depth(sqs, urls[name]) for name in chosen}
            moved = sum(max(before[name] - left[name], 0) for name in chosen)
            progress.update(task, completed=min(moved, total))
        if answer:
            progress.update(task, total=max(total, answer["total_moved"]), completed=answer["total_moved"])
    if failure:
        raise failure[0]
    return answer


@app.command()
def queues(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print GET /queues' answer as JSON.")] = False,
) -> None:
    """Messages waiting, in flight and dead-lettered, per queue (the API's GET /queues)."""
    target = _where(context).target()
    view = _api_answer(target, "GET", "/queues")
    if as_json:
        _print_json(view)
    else:
        out.print(render.queues(view))


def _api_answer(target: Target, method: str, path: str) -> dict[str, Any]:
    try:
        response = target.api(method, path)
    except requests.RequestException as error:
        raise TargetError(f"{method} {path} on {target.description}: {error}") from error
    return answer_of(response, f"{method} {path}")


@app.command()
def status(
    context: typer.Context,
    notification_id: Annotated[str, typer.Argument(help="The notification_id POST /notifications answered.")],
    wait: Annotated[bool, typer.Option("--wait", help="Wait until every delivery is final.")] = False,
    timeout: Annotated[float, typer.Option(help="How long --wait waits, in seconds.")] = 60,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's answer as JSON.")] = False,
) -> None:
    """Where a notification stands, device by device (the API's GET /notifications/{id})."""
    target = _where(context).target()
    deadline = time.monotonic() + timeout
    record = _api_answer(target, "GET", f"/notifications/{notification_id}")
    while wait and record["status"] not in render.FINAL_STATES:
        if time.monotonic() > deadline:
            out.print(render.notification(record))
            raise TargetError(f"not final after {timeout:.0f} s: {record['status']}")
        time.sleep(0.5)
        record = _api_answer(target, "GET", f"/notifications/{notification_id}")
    if as_json:
        _print_json(record)
    else:
        out.print(render.notification(record))


@app.command()
def metrics(
    context: typer.Context,
    minutes: Annotated[int, typer.Option(min=1, help="Only the last this many minutes.")] = 60,
    since: Annotated[int, typer.Option(min=0, help="Local: only documents after this position.")] = 0,
    raw: Annotated[bool, typer.Option("--raw", help="Local: print the EMF documents as the functions wrote them.")] = (
        False
    ),
    as_json: Annotated[bool, typer.Option("--json", help="Print the summaries as JSON.")] = False,
) -> None:
    """Herald's metrics (deliveries sent, failed, retried, dead-lettered, skipped; latency; fan-out size).

    Locally: the EMF the functions wrote, collected by the stack, summed per metric and dimensions.
    Deployed: CloudWatch's statistics for namespace Herald over the last --minutes.
    """
    target = _where(context).target()
    summaries, records = target.metrics(since, minutes)
    if raw:
        for record in records:
            print(json.dumps({"function": record["function"], **record["document"]}))
    elif as_json:
        # `last`: the position to pass as --since next time, to read only what comes after (local stack).
        last = records[-1]["seq"] if records else None
        _print_json({"metrics": [summary.model_dump(mode="json") for summary in summaries], "last": last})
    else:
        out.print(render.metrics(summaries, target.description))


@faults_app.command("on")
def faults_on(
    context: typer.Context,
    plan: Annotated[Path | None, typer.Argument(help="A FaultPlan JSON file (docs/local-stack.md).")] = None,
    channel: Annotated[ChannelChoice | None, typer.Option(help="Only this channel (default: every channel).")] = None,
    transient_rate: Annotated[float, typer.Option(min=0, max=1, help="Retryable provider errors.")] = 0.0,
    permanent_rate: Annotated[float, typer.Option(min=0, max=1, help="The channel's permanent error.")] = 0.0,
    crash_after_send_rate: Annotated[float, typer.Option(min=0, max=1, help="Crash after the provider took it.")] = 0.0,
    latency_ms: Annotated[int, typer.Option(min=0, help="Added before every provider call.")] = 0,
    latency_jitter_ms: Annotated[int, typer.Option(min=0, help="Plus uniformly up to this.")] = 0,
    duplicate_rate: Annotated[float, typer.Option(min=0, max=1, help="Queue messages delivered twice.")] = 0.0,
    concurrent_copy_rate: Annotated[
        float, typer.Option(min=0, max=1, help="Queue messages handled at once with copies of themselves.")
    ] = 0.0,
    seed: Annotated[int, typer.Option(help="Fixes every decision for the same traffic.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the control endpoint's answer as JSON.")] = False,
) -> None:
    """Switch faults on: a plan file, or the rates given here; from the next provider call on."""
    stack = _where(context).local()
    rates = {
        "transient_rate": transient_rate,
        "permanent_rate": permanent_rate,
        "crash_after_send_rate": crash_after_send_rate,
        "latency_ms": latency_ms,
        "latency_jitter_ms": latency_jitter_ms,
    }
    chosen = {name: value for name, value in rates.items() if value}
    if plan is not None:
        if chosen or duplicate_rate or concurrent_copy_rate or channel or seed:
            raise TargetError("give a plan file or rate options, not both")
        body = json.loads(plan.read_text())
    elif not chosen and not duplicate_rate and not concurrent_copy_rate:
        raise TargetError("say what to inject: a plan file, or at least one rate (herald faults on --help)")
    else:
        body = {"seed": seed, "duplicate_rate": duplicate_rate, "concurrent_copy_rate": concurrent_copy_rate}
        body.update({"channels": {channel.value: chosen}} if channel else {"default": chosen})
    answer = LocalTarget(stack).control("PUT", "/faults", body)
    _print_json(answer) if as_json else out.print(render.faults(answer))


@faults_app.command("off")
def faults_off(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the control endpoint's answer as JSON.")] = False,
) -> None:
    """Switch faults off: every call goes straight to its provider again."""
    answer = LocalTarget(_where(context).local()).control("DELETE", "/faults")
    _print_json(answer) if as_json else out.print(render.faults(answer))


@faults_app.command("status")
def faults_status(
    context: typer.Context,
    as_json: Annotated[bool, typer.Option("--json", help="Print the control endpoint's answer as JSON.")] = False,
) -> None:
    """The plan in force, and what the injector did so far."""
    answer = LocalTarget(_where(context).local()).control("GET", "/faults")
    _print_json(answer) if as_json else out.print(render.faults(answer))


def main() -> None:
    """The `herald` command (pyproject.toml's [project.scripts])."""
    try:
        app()
    except (TargetError, UnknownFunction) as error:
        err.print(f"herald: {error}", style="red", highlight=False)
        sys.exit(1)
