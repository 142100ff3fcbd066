"""Counts every AWS call made in this process, by who made it, service, operation and resource.

botocore emits `before-parameter-build.<service>.<Operation>` once per API call (paginated pages
included, SDK retries not) and `after-call` once it is answered. The counter hooks both on the
clients it is given. Who made a call is read from the calling thread's stack: the innermost frame
of this repository's code decides whether Herald (functions/), the local stack's SQS poller (what
Lambda's event source mapping does on AWS), the local stack itself or the benchmark made it.

Each call is also metered in the units AWS bills it in (bench/capacity.py): DynamoDB capacity units
from the sizes of the items read and written, SQS and SNS requests per 64 KB chunk. A write's size
before and after needs the item itself: with `ItemImages`, the counter reads it from the endpoint
through a client of its own (not counted), before the write and after. A write also bills each global
secondary index it changes (an item entering or leaving a sparse index: one write; moving in it: two),
which the same two images tell.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from bench.capacity import (
    DYNAMODB_READS,
    DYNAMODB_WRITES,
    billed_requests,
    item_size,
    read_units_of,
    write_units,
)

ROOT = Path(__file__).resolve().parent.parent
FUNCTIONS = str(ROOT / "functions") + "/"
POLLER = str(ROOT / "herald_local" / "event_source.py")
LOCAL_STACK = str(ROOT / "herald_local") + "/"
BENCH = str(ROOT / "bench") + "/"
SELF = str(Path(__file__).resolve())


class Origin:
    HERALD = "herald"  # Herald's functions: what its code asks of AWS
    POLLER = "poller"  # the event source mapping's receives and deletes
    STACK = "stack"  # the local stack's own provisioning and plumbing
    BENCH = "bench"  # the benchmark's setup and reads
    OTHER = "other"


def _kind(filename: str) -> str | None:
    if filename == SELF:
        return None
    if filename.startswith(FUNCTIONS):
        return Origin.HERALD
    if filename == POLLER:
        return Origin.POLLER
    if filename.startswith(LOCAL_STACK):
        return Origin.STACK
    if filename.startswith(BENCH):
        return Origin.BENCH
    return None


# The origin of whoever submitted the work a pool's worker thread is running (see inherit_origin).
_submitted = threading.local()


def inherit_origin() -> None:
    """Makes work a thread pool runs count for whoever submitted it: Herald's fan-out looks devices up and
    publishes from pool threads, whose own stack holds no handler frame. Installed once per process."""
    submit = ThreadPoolExecutor.submit
    if getattr(submit, "bench_inherits_origin", False):
        return

    def submit_with_origin(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        origin = origin_of(sys._getframe(1))

        def run(*inner_args: Any, **inner_kwargs: Any) -> Any:
            previous = getattr(_submitted, "origin", None)
            _submitted.origin = origin
            try:
                return fn(*inner_args, **inner_kwargs)
            finally:
                _submitted.origin = previous

        return submit(self, run, *args, **kwargs)

    submit_with_origin.bench_inherits_origin = True  # type: ignore[attr-defined]
    ThreadPoolExecutor.submit = submit_with_origin  # type: ignore[method-assign]


def origin_of(frame: FrameType | None) -> tuple[str, str]:
    """Who made the call, and for Herald which function.

    Herald's calls are those made inside a handler (a functions/<name>/app.py frame on the stack).
    Herald's code called from elsewhere (the benchmark registering devices or reading a status)
    belongs to its caller: the first frame of this repository outside functions/ decides. In a
    pool's worker thread that nothing of this repository decides, the submitter's origin does; so it
    does when Herald's own code is innermost there (a deliver function's provider calls, made from its
    pool through the local stack's provider wrappers, whose frames would otherwise decide).
    """
    found = _origin_on_stack(frame)
    inherited: tuple[str, str] | None = getattr(_submitted, "origin", None)
    if inherited is None or (found[0] == Origin.HERALD and found[1]):
        return found
    return inherited if found == (Origin.OTHER, "") or _innermost(frame) == Origin.HERALD else found


def _innermost(frame: FrameType | None) -> str | None:
    """The kind of the innermost frame of this repository's code on the stack."""
    while frame is not None:
        kind = _kind(frame.f_code.co_filename)
        if kind is not None:
            return kind
        frame = frame.f_back
    return None


def _origin_on_stack(frame: FrameType | None) -> tuple[str, str]:
    innermost: str | None = None
    outside: str | None = None
    while frame is not None:
        filename = frame.f_code.co_filename
        kind = _kind(filename)
        if kind == Origin.HERALD and filename.endswith("/app.py"):
            return Origin.HERALD, filename[len(FUNCTIONS) :].split("/", 1)[0]
        if kind is not None:
            innermost = innermost or kind
            if kind != Origin.HERALD and outside is None:
                outside = kind
                if innermost != Origin.HERALD:
                    return kind, ""
        frame = frame.f_back
    return outside or Origin.OTHER, ""


def resource_of(service: str, params: dict[str, Any]) -> str:
    """The table, queue, topic or kind of target a call is about, as named in the request."""
    if service == "dynamodb":
        if "TableName" in params:
            return str(params["TableName"])
        if "RequestItems" in params:
            return ",".join(sorted(params["RequestItems"]))
        return ""
    if service == "sqs":
        return str(params.get("QueueUrl", "")).rsplit("/", 1)[-1]
    if service == "sns":
        if "TargetArn" in params:
            return "endpoint"
        if "PhoneNumber" in params:
            return "phone"
        return str(params.get("TopicArn", "")).rsplit(":", 1)[-1]
    return ""


def entries_of(operation: str, params: dict[str, Any]) -> int:
    """How many items a call carries: the entries of a batch call, else 1."""
    if operation in {"SendMessageBatch", "DeleteMessageBatch", "ChangeMessageVisibilityBatch"}:
        return len(params.get("Entries", []))
    if operation == "PublishBatch":
        return len(params.get("PublishBatchRequestEntries", []))
    if operation == "BatchWriteItem":
        return sum(len(requests) for requests in params.get("RequestItems", {}).values())
    if operation == "BatchGetItem":
        return sum(len(request.get("Keys", [])) for request in params.get("RequestItems", {}).values())
    return 1


@dataclass(frozen=True)
class CallKey:
    origin: str
    function: str  # for Herald's calls: api, fanout, deliver or dlq_redrive
    service: str
    operation: str
    resource: str
    thread: str = ""  # the calling thread's name without its number: the local stack names its
    # pollers' threads after their event source mapping ("poll-<mapping>", "<mapping>_<n>")


def thread_group(name: str) -> str:
    """A thread's name without the number a pool appends ("Mapping_3" -> "Mapping")."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


@dataclass
class Tally:
    calls: Counter[CallKey] = field(default_factory=Counter)
    entries: Counter[CallKey] = field(default_factory=Counter)
    received: Counter[CallKey] = field(default_factory=Counter)  # messages a ReceiveMessage returned
    empty_receives: Counter[CallKey] = field(default_factory=Counter)
    errors: Counter[CallKey] = field(default_factory=Counter)
    seconds: Counter[CallKey] = field(default_factory=Counter)  # time waiting for answers, summed
    # What the calls bill as: DynamoDB write or read units, SQS or SNS requests (64 KB chunks), else 1
    # per call. DynamoDB writes are metered only with ItemImages (else 0).
    units: Counter[CallKey] = field(default_factory=Counter)

    def since(self, earlier: Tally) -> Tally:
        """What was counted after `earlier` was taken."""
        return Tally(
            self.calls - earlier.calls,
            self.entries - earlier.entries,
            self.received - earlier.received,
            self.empty_receives - earlier.empty_receives,
            self.errors - earlier.errors,
            self.seconds - earlier.seconds,
            self.units - earlier.units,
        )

    def count(self, origin: str | None = None, service: str | None = None, operation: str | None = None) -> int:
        return sum(
            n
            for key, n in self.calls.items()
            if (origin is None or key.origin == origin)
            and (service is None or key.service == service)
            and (operation is None or key.operation == operation)
        )

    def copy(self) -> Tally:
        return Tally(
            Counter(self.calls),
            Counter(self.entries),
            Counter(self.received),
            Counter(self.empty_receives),
            Counter(self.errors),
            Counter(self.seconds),
            Counter(self.units),
        )


class ItemImages:
    """Reads an item as it stands, through a DynamoDB client of its own (hook nothing on it): the sizes a
    write is billed on. Key schemas are asked once per table."""

    def __init__(self, dynamodb: Any):
        self._dynamodb = dynamodb
        self._schemas: dict[str, tuple[str, ...]] = {}
        self._indexes: dict[str, list[tuple[str, ...]]] = {}
        self._lock = threading.Lock()

    def key_of(self, table: str, item: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            names = self._schemas.get(table)
        if names is None:
            schema = self._dynamodb.describe_table(TableName=table)["Table"]["KeySchema"]
            names = tuple(str(element["AttributeName"]) for element in schema)
            with self._lock:
                self._schemas[table] = names
        return {name: item[name] for name in names if name in item}

    def size(self, table: str, key: dict[str, Any]) -> int:
        return item_size(self.item(table, key))

    def item(self, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self._dynamodb.get_item(TableName=table, Key=key, ConsistentRead=True).get(
            "Item"
        )
        return found

    def index_writes(self, table: str, before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
        """Writes a table write makes in its global secondary indexes (each billed at least one write unit):
        an item entering or leaving an index, 1; staying with other keys, 2 (a delete and a put); staying with
        the same keys, 0 for Herald's KEYS_ONLY indexes (nothing projected changed)."""
        with self._lock:
            indexes = self._indexes.get(table)
        if indexes is None:
            described = self._dynamodb.describe_table(TableName=table)["Table"]
            indexes = [
                tuple(str(element["AttributeName"]) for element in index["KeySchema"])
                for index in described.get("GlobalSecondaryIndexes", [])
            ]
            with self._lock:
                self._indexes[table] = indexes
        return index_writes(indexes, before, after)


def index_writes(indexes: list[tuple[str, ...]], before: dict[str, Any] | None, after: dict[str, Any] | None) -> int:
    """Writes to global secondary indexes (given by their key attributes) of a write from `before` to `after`."""
    writes = 0
    for names in indexes:
        old, new = _index_key(before, names), _index_key(after, names)
        if old != new:
            writes += 2 if old is not None and new is not None else 1
    return writes


def _index_key(item: dict[str, Any] | None, names: tuple[str, ...]) -> tuple[str, ...] | None:
    """The item's key in an index, None when it lacks one of the index's key attributes (a sparse index)."""
    if not item or any(name not in item for name in names):
        return None
    return tuple(json.dumps(item[name], sort_keys=True) for name in names)


# What a write request writes to one item: its table, its key, and the item it leaves (None for an update,
# whose result is read after; {} for a delete).
Written = tuple[str, dict[str, Any], dict[str, Any] | None]


def _written_keys(operation: str, params: dict[str, Any], images: ItemImages) -> list[Written]:
    if operation == "PutItem":
        item = params["Item"]
        return [(params["TableName"], images.key_of(params["TableName"], item), item)]
    if operation == "UpdateItem":
        return [(params["TableName"], params["Key"], None)]
    if operation == "DeleteItem":
        return [(params["TableName"], params["Key"], {})]
    written: list[Written] = []
    for table, requests in params.get("RequestItems", {}).items():  # BatchWriteItem
        for request in requests:
            if "PutRequest" in request:
                item = request["PutRequest"]["Item"]
                written.append((table, images.key_of(table, item), item))
            else:
                written.append((table, request["DeleteRequest"]["Key"], {}))
    return written


class CallCounter:
    """Hooks the given boto3 clients; `snapshot()` copies the tally, `reset()` starts it again.

    With `images`, every DynamoDB write is metered in write units on the larger of its item's size
    before and after (two reads of the item per write, on a client that is not counted)."""

    def __init__(self, images: ItemImages | None = None) -> None:
        self._lock = threading.Lock()
        self._tally = Tally()
        self._hooked: set[int] = set()
        self._images = images
        self._epoch = 0  # bumped by reset(): a call begun before it is not finished into the new tally

    def hook(self, *clients: Any) -> None:
        inherit_origin()
        for client in clients:
            if id(client) in self._hooked:
                continue
            self._hooked.add(id(client))
            client.meta.events.register("before-parameter-build", self._before)
            client.meta.events.register("after-call", self._after)

    def _before(self, params: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        service = model.service_model.endpoint_prefix
        origin, function = origin_of(sys._getframe(1))
        thread = thread_group(threading.current_thread().name)
        key = CallKey(origin, function, service, model.name, resource_of(service, params), thread)
        context["bench_call"] = key
        context["bench_params"] = params
        if self._images is not None and service == "dynamodb" and model.name in DYNAMODB_WRITES:
            written = _written_keys(model.name, params, self._images)
            context["bench_written"] = [
                (table, item_key, self._images.item(table, item_key), new) for table, item_key, new in written
            ]
        context["bench_started"] = time.perf_counter()
        with self._lock:
            context["bench_epoch"] = self._epoch  # the tally this call is counted in
            self._tally.calls[key] += 1
            self._tally.entries[key] += entries_of(model.name, params)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], http_response: Any, **_: Any) -> None:
        key = context.get("bench_call")
        if key is None:
            return
        seconds = time.perf_counter() - context.get("bench_started", time.perf_counter())
        units = self._units(key, context, parsed)
        with self._lock:
            if context.get("bench_epoch") != self._epoch:
                return
            self._tally.seconds[key] += seconds
            self._tally.units[key] += units
            if http_response.status_code >= 400:
                self._tally.errors[key] += 1
            if key.operation == "ReceiveMessage":
                messages = len(parsed.get("Messages", []))
                self._tally.received[key] += messages
                if not messages:
                    self._tally.empty_receives[key] += 1

    def _units(self, key: CallKey, context: dict[str, Any], parsed: dict[str, Any]) -> float:
        params = context.get("bench_params", {})
        if key.service in ("sqs", "sns"):
            return billed_requests(key.service, key.operation, params, parsed)
        if key.service == "dynamodb" and key.operation in DYNAMODB_READS:
            return read_units_of(key.operation, params, parsed)
        if key.service == "dynamodb" and key.operation in DYNAMODB_WRITES:
            if self._images is None:
                return 0.0
            total = 0
            refused = bool(parsed.get("Error"))  # by its condition: the item, and its indexes, stay as they were
            for table, item_key, before, new in context.get("bench_written", []):
                # An update's result is read back.
                after = self._images.item(table, item_key) if new is None else new
                total += write_units(item_size(before), item_size(after))
                total += self._images.index_writes(table, before, before if refused else after)
            return total
        return 1.0

    def reset(self) -> None:
        with self._lock:
            self._tally = Tally()
            self._epoch += 1

    def snapshot(self) -> Tally:
        with self._lock:
            return self._tally.copy()
