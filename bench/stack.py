"""The local stack as the benchmarks drive it: started in this process, its AWS calls counted and its
function invocations timed, users and devices seeded, notifications sent over HTTP."""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import requests

from bench.calls import CallCounter, ItemImages, Origin, Tally
from bench.report import BenchError, progress
from herald_local.emulator import Placement, constant_time_clock

API_KEY = "bench"
SERVICES = ("dynamodb", "sqs", "sns", "ses")


class Backend(StrEnum):
    """What answers the local stack's AWS calls."""

    EMBEDDED = "embedded"  # moto in this process (the stack's --emulator thread), with a constant-time clock
    STOCK = "stock"  # the same, moto's clock left as it is
    PROCESS = "process"  # moto in a process of its own (its own interpreter lock), constant-time clock
    STACK = "stack"  # the stack starts its own moto, as `make run` does: a process of its own, constant-time clock
    ENVIRONMENT = "environment"  # the AWS_ENDPOINT_URL* of the environment: LocalStack, say


def backend_option(parser: argparse.ArgumentParser) -> None:
    """The command-line option of a benchmark that runs the local stack."""
    parser.add_argument(
        "--backend",
        type=Backend,
        choices=list(Backend),
        default=None,
        help="embedded: moto in this process (default); stock: the same without the clock fix; process: "
        "moto in its own process; stack: the stack's own moto, as make run starts it; environment: the "
        "AWS_ENDPOINT_URL* variables (e.g. LocalStack)",
    )


# Runs in a child process: the local stack's emulator (herald_local.emulator, the one place a moto
# server is made) with the constant-time clock; prints its port as JSON, serves until stdin closes.
EMULATOR_PROCESS = """
import sys
from bench.stack import quicken_emulator_clock, quicken_emulator_queries
quicken_emulator_clock()
quicken_emulator_queries()
from herald_local.emulator import main
sys.exit(main([]))
"""


@contextmanager
def emulator_process() -> Iterator[str]:
    """A moto server in a child process; yields its endpoint. Stopped when the block ends."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "functions"), str(root)]))
    child = subprocess.Popen(
        [sys.executable, "-c", EMULATOR_PROCESS],
        cwd=root,
        env=environment,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        line = child.stdout.readline()  # {"port": N}, or {"error": ...}
        try:
            port = int(json.loads(line)["port"])
        except (ValueError, KeyError):
            raise BenchError(f"the emulator process did not start (it said {line.strip()!r})") from None
        yield f"http://127.0.0.1:{port}"
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


@dataclass(frozen=True)
class Invocation:
    function: str
    seconds: float
    records: int  # SQS records in the event; 0 for an API request


class InvocationClock:
    """Times every invocation of the local stack's functions, as Lambda bills them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.invocations: list[Invocation] = []

    def wrap(self, function: Any) -> None:
        invoke = function.invoke
        name = function.name

        def timed(event: dict[str, Any]) -> Any:
            started = time.perf_counter()
            try:
                return invoke(event)
            finally:
                seconds = time.perf_counter() - started
                with self._lock:
                    self.invocations.append(Invocation(name, seconds, len(event.get("Records", []))))

        function.invoke = timed

    def reset(self) -> None:
        with self._lock:
            self.invocations = []

    def snapshot(self) -> list[Invocation]:
        with self._lock:
            return list(self.invocations)


@dataclass(frozen=True)
class Sent:
    """One delivery's timing, from the status store."""

    notification_id: str
    status: str
    accepted_at: datetime
    sent_at: datetime | None

    @property
    def seconds_to_sent(self) -> float | None:
        return (self.sent_at - self.accepted_at).total_seconds() if self.sent_at else None


class BenchStack:
    """A started LocalStack, with its counter, clock and the names of its resources."""

    def __init__(self, stack: Any, counter: CallCounter, clock: InvocationClock):
        self.stack = stack
        self.counter = counter
        self.clock = clock
        self._sessions = threading.local()  # one HTTP session per sending thread
        # Resource name as a call names it (table, queue, topic) -> the template's logical id.
        self.roles: dict[str, str] = {}
        for logical_id, value in stack.stack.resolver.refs.items():
            if logical_id in stack.stack.parameters or logical_id.startswith("AWS::"):
                continue
            self.roles[str(value).rsplit("/", 1)[-1].rsplit(":", 1)[-1]] = logical_id
        self.throttled = 0
        self.emulator = ""

    # --- names -------------------------------------------------------------------------------------

    def ref(self, logical_id: str) -> str:
        return str(self.stack.stack.ref(logical_id))

    def role(self, resource: str) -> str:
        return self.roles.get(resource, resource)

    def function(self, handler_prefix: str) -> Any:
        """The local function whose handler starts with `handler_prefix` ("api.", "fanout."...)."""
        for function in self.stack.functions.values():
            if function.spec.handler.startswith(handler_prefix):
                return function
        raise BenchError(f"no function with a handler {handler_prefix}*")

    def deliver_function(self, priority: str) -> Any:
        for function in self.stack.functions.values():
            settings = getattr(function.dependencies, "settings", None)
            if function.spec.handler.startswith("deliver.") and getattr(settings, "priority", None) == priority:
                return function
        raise BenchError(f"no deliver function for {priority}")

    def event_sources(self) -> list[Any]:
        """The template's event source mappings (queue, batch size, window), as the pollers run them."""
        return [poller.spec for poller in self.stack.pollers]

    @property
    def api(self) -> Any:
        """The API function's dependencies: its registry, endpoints and status store."""
        return self.function("api.").dependencies

    # --- seeding -----------------------------------------------------------------------------------

    def add_devices(self, user_id: str, count: int, channel: str = "push") -> None:
        """Registers `count` devices of `user_id` with Herald's own registration, from this thread
        (the API's throttle would make a thousand devices take a minute; these calls are not counted)."""
        from herald.logic.registration import register_device
        from herald.models.api import InAppRegistration, PushRegistration
        from herald.models.domain import Platform

        api = self.api
        for index in range(count):
            registration: Any
            if channel == "push":
                token = f"{user_id}-{index}-{uuid.uuid4().hex}"
                registration = PushRegistration(channel="push", address=token, platform=Platform.FCM)
            else:
                registration = InAppRegistration(channel="in_app")
            register_device(api.registry, api.endpoints, user_id, f"device-{index:04d}", registration)

    # --- the API, over HTTP ------------------------------------------------------------------------

    @property
    def http(self) -> requests.Session:
        session: requests.Session | None = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
            session.headers["x-api-key"] = API_KEY
        return session

    def send(
        self,
        recipients: list[str],
        priority: str,
        title: str = "Bench",
        body: str = "benchmark",
        idempotency_key: str | None = None,
    ) -> str:
        """POST /notifications; waits out the usage plan's throttle (429) like a polite client."""
        request = {"recipients": recipients, "title": title, "body": body, "priority": priority}
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        for _ in range(200):
            response = self.http.post(f"{self.stack.api_url}/notifications", json=request, headers=headers, timeout=30)
            if response.status_code == 202:
                notification_id: str = response.json()["notification_id"]
                return notification_id
            if response.status_code != 429:
                raise BenchError(f"POST /notifications answered {response.status_code}: {response.text}")
            self.throttled += 1
            time.sleep(0.05)
        raise BenchError("POST /notifications throttled for 10 s")

    # --- progress and outcomes ---------------------------------------------------------------------

    def deleted(self, logical_id: str, tally: Tally | None = None) -> int:
        """Messages the poller deleted from a queue (each one handled) since the last reset."""
        tally = tally or self.counter.snapshot()
        name = self.ref(logical_id).rsplit("/", 1)[-1]
        return sum(
            n
            for key, n in tally.entries.items()
            if key.origin == Origin.POLLER and key.operation == "DeleteMessageBatch" and key.resource == name
        )

    def wait_until(self, done: Callable[[], bool], timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not done():
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(0.02)

    def outcomes(self, notification_ids: list[str]) -> list[Sent]:
        """Every delivery of these notifications, read from the status store (not counted)."""
        sent = []
        for notification_id in notification_ids:
            record = self.api.reader.get(notification_id)
            if record is None or record.accepted_at is None:
                raise BenchError(f"no status for {notification_id}")
            deliveries, cursor = list(record.deliveries), record.next_cursor
            while cursor is not None:  # the status shows the first 100; the rest page by page
                page = self.api.reader.deliveries(notification_id, 100, cursor)
                deliveries += page.deliveries
                cursor = page.next_cursor
            for delivery in deliveries:
                sent.append(Sent(notification_id, delivery.status.value, record.accepted_at, delivery.sent_at))
        return sent

    def queue_depth(self, logical_id: str) -> int:
        """Visible plus in-flight messages of a queue (not counted: the bench asks)."""
        from herald.adapters.clients import client

        attributes = client("sqs").get_queue_attributes(
            QueueUrl=self.ref(logical_id),
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])

    def reset(self) -> None:
        self.counter.reset()
        self.clock.reset()
        self.throttled = 0

    def handler_seconds(self) -> dict[str, list[Invocation]]:
        by_function: dict[str, list[Invocation]] = defaultdict(list)
        for invocation in self.clock.snapshot():
            by_function[invocation.function].append(invocation)
        return dict(by_function)


# Gives moto's SQS a constant-time clock; True when applied. The local stack's emulator process
# applies it to itself; the benchmarks that run moto in their own process (embedded) apply it here.
quicken_emulator_clock = constant_time_clock


_partition = threading.local()


def quicken_emulator_queries() -> bool:
    """Makes moto's DynamoDB Query on a table's key read the queried partition only; True when applied.

    moto 5.2 answers every Query by listing and sorting every item of the table, then keeping the
    partition's: at 20,000 devices one query costs half a second, so a broadcast's per-subscriber
    device lookups grow with the square of the audience on the emulator (DynamoDB reads the
    partition alone). moto keeps a table's items by partition already: a base-table query with a
    partition key now lists that partition. Index queries and scans are unchanged, and so are the
    results.
    """
    from moto.dynamodb.models.table import Table

    if getattr(Table.query, "bench_reads_partition", False):
        return True
    query, all_items = Table.query, Table.all_items

    def query_partition(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)  # moto passes it 8th
        if index_name or hash_key is None or not self.range_key_attr:
            return query(self, hash_key, *args, **kwargs)
        _partition.key = hash_key
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _partition.key = None

    def items_of_partition(self: Any) -> Any:
        key = getattr(_partition, "key", None)
        if key is None:
            return all_items(self)
        return sorted(self.items.get(key, {}).values(), key=lambda item: item.range_key)

    query_partition.bench_reads_partition = True  # type: ignore[attr-defined]
    Table.query = query_partition
    Table.all_items = items_of_partition
    return True


@contextmanager
def running_stack(
    parameters: dict[str, str] | None = None, backend: Backend = Backend.EMBEDDED, item_images: bool = False
) -> Iterator[BenchStack]:
    """A local stack started in this process, counted from a clean slate, on the given backend.

    With `item_images`, DynamoDB writes are metered in write units (two uncounted reads per write)."""
    if backend is Backend.PROCESS:
        with (
            emulator_process() as endpoint,
            _environment(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing"),
            _started(
                parameters,
                f"moto {moto_version()} in its own process, constant-time SQS clock, partition-only queries",
                item_images,
            ) as bench,
        ):
            yield bench
        return
    if backend is Backend.ENVIRONMENT:
        with _started(parameters, "the AWS_ENDPOINT_URL* endpoints of the environment", item_images) as bench:
            yield bench
        return
    # The bench measures the local stack's own moto: a developer's endpoint variables must not redirect it.
    with _environment(**{name: None for name in os.environ if name.startswith("AWS_ENDPOINT_URL")}):
        if backend is Backend.STACK:
            description = f"moto {moto_version()} in a process of its own, started by the stack as `make run` does"
            with _started(parameters, description, item_images, Placement.PROCESS) as bench:
                yield bench
            return
        quickened = backend is Backend.EMBEDDED and quicken_emulator_clock() and quicken_emulator_queries()
        description = f"moto {moto_version()} in this process" + (
            ", constant-time SQS clock, partition-only queries" if quickened else ""
        )
        with _started(parameters, description, item_images, Placement.THREAD) as bench:
            yield bench


@contextmanager
def _environment(**values: str | None) -> Iterator[None]:
    """Sets (or, for None, removes) environment variables for the block, then restores them."""
    saved = {name: os.environ.get(name) for name in values}
    try:
        for name, value in values.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def _started(
    parameters: dict[str, str] | None,
    emulator: str,
    item_images: bool = False,
    placement: Placement = Placement.PROCESS,
) -> Iterator[BenchStack]:
    """The local stack, started in this process; `placement` places its own moto server, if it starts one."""
    import boto3

    from herald.adapters.clients import client, provider_client
    from herald_local.stack import LocalStack, StackOptions

    progress(f"starting the local stack in this process ({emulator})")
    started = time.perf_counter()
    options = StackOptions(
        api_port=0, api_key=API_KEY, parameters=parameters or {}, log_level="WARNING", emulator=placement
    )
    with LocalStack(options) as stack:
        progress(f"local stack ready in {time.perf_counter() - started:.1f} s")
        # The item reader has a client of its own: its reads are not Herald's and are never counted.
        images = ItemImages(boto3.client("dynamodb")) if item_images else None
        counter, clock = CallCounter(images), InvocationClock()
        # Every client of the stack and its functions comes from herald.adapters.clients: one per service, and
        # one more for each provider (SES, SNS) that makes a single attempt per call.
        counter.hook(*(client(service) for service in SERVICES), provider_client("ses"), provider_client("sns"))
        for function in stack.functions.values():
            clock.wrap(function)
        bench = BenchStack(stack, counter, clock)
        bench.emulator = emulator
        yield bench
