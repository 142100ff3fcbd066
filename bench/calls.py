"""Counts every AWS call made in this process, by who made it, service, operation and resource.

botocore emits `before-parameter-build.<service>.<Operation>` once per API call (paginated pages
included, SDK retries not) and `after-call` once it is answered. The counter hooks both on the
clients it is given. Who made a call is read from the calling thread's stack: the innermost frame
of this repository's code decides whether Herald (functions/), the local stack's SQS poller (what
Lambda's event source mapping does on AWS), the local stack itself or the benchmark made it.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

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


def origin_of(frame: FrameType | None) -> tuple[str, str]:
    """Who made the call, and for Herald which function.

    Herald's calls are those made inside a handler (a functions/<name>/app.py frame on the stack).
    Herald's code called from elsewhere (the benchmark registering devices or reading a status)
    belongs to its caller: the first frame of this repository outside functions/ decides.
    """
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

    def since(self, earlier: Tally) -> Tally:
        """What was counted after `earlier` was taken."""
        return Tally(
            self.calls - earlier.calls,
            self.entries - earlier.entries,
            self.received - earlier.received,
            self.empty_receives - earlier.empty_receives,
            self.errors - earlier.errors,
            self.seconds - earlier.seconds,
        )

    def count(self, origin: str | None = None, service: str | None = None, operation: str | None = None) -> int:
        return sum(
            n
            for key, n in self.calls.items()
            if (origin is None or key.origin == origin)
            and (service is None or key.service == service)
            and (operation is None or key.operation == operation)
        )


class CallCounter:
    """Hooks the given boto3 clients; `snapshot()` copies the tally, `reset()` starts it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tally = Tally()
        self._hooked: set[int] = set()

    def hook(self, *clients: Any) -> None:
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
        context["bench_started"] = time.perf_counter()
        with self._lock:
            self._tally.calls[key] += 1
            self._tally.entries[key] += entries_of(model.name, params)

    def _after(self, parsed: dict[str, Any], context: dict[str, Any], http_response: Any, **_: Any) -> None:
        key = context.get("bench_call")
        if key is None:
            return
        seconds = time.perf_counter() - context.get("bench_started", time.perf_counter())
        with self._lock:
            self._tally.seconds[key] += seconds
            if http_response.status_code >= 400:
                self._tally.errors[key] += 1
            if key.operation == "ReceiveMessage":
                messages = len(parsed.get("Messages", []))
                self._tally.received[key] += messages
                if not messages:
                    self._tally.empty_receives[key] += 1

    def reset(self) -> None:
        with self._lock:
            self._tally = Tally()

    def snapshot(self) -> Tally:
        with self._lock:
            return Tally(
                Counter(self._tally.calls),
                Counter(self._tally.entries),
                Counter(self._tally.received),
                Counter(self._tally.empty_receives),
                Counter(self._tally.errors),
                Counter(self._tally.seconds),
            )
