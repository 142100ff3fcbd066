"""The local stack's moto server: 127.0.0.1 only, DynamoDB's requests one at a time, still moments for snapshots.

moto's `ThreadedMotoServer` serves every request in its own thread, and moto's DynamoDB checks a
condition, then writes, with nothing held in between: two concurrent `UpdateItem`s with
`attribute_not_exists` can both win (measured: 12-16 of 60 rounds of 10 concurrent callers had
more than one winner). On AWS a conditional write is atomic, and Herald's claims and idempotency
keys rely on it. So this server lets DynamoDB requests through one at a time, while SQS, SNS, SES
and CloudFormation requests stay concurrent.

It also lets the local stack's state keeper (herald_local/state.py) take a snapshot at a moment no
request is half applied: every request passes a gate that a snapshot closes for its duration. So
that no request sits in the gate for long, an SQS long poll (`WaitTimeSeconds` > 0) is served as a
series of short polls, each passing the gate on its own, until messages come or the wait is over.
"""

from __future__ import annotations

import errno
import io
import json
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import Any

# X-Amz-Target of DynamoDB's JSON protocol: "DynamoDB_20120810.UpdateItem" (Streams are "DynamoDBStreams_...").
DYNAMODB_TARGET = "DynamoDB_"
# Actions that change nothing, by X-Amz-Target (the JSON protocols of DynamoDB and SQS): a snapshot
# is due only after a request that is not one of these.
READ_ONLY_ACTIONS = frozenset(
    {
        "DynamoDB_20120810." + action
        for action in (
            "BatchGetItem",
            "DescribeContinuousBackups",
            "DescribeEndpoints",
            "DescribeTable",
            "DescribeTimeToLive",
            "GetItem",
            "ListTables",
            "ListTagsOfResource",
            "Query",
            "Scan",
            "TransactGetItems",
        )
    }
    | {
        "AmazonSQS." + action
        for action in (
            "GetQueueAttributes",
            "GetQueueUrl",
            "ListDeadLetterSourceQueues",
            "ListMessageMoveTasks",
            "ListQueueTags",
            "ListQueues",
        )
    }
)
RECEIVE_MESSAGE = "AmazonSQS.ReceiveMessage"
LONG_POLL_EVERY = 0.1  # seconds between the short polls that make up a long poll


class PortInUse(Exception):
    """A port the local stack was told to listen on is taken: says which, and the option that sets it."""

    def __init__(self, port: int, option: str, what: str):
        super().__init__(f"port {port} ({what}, {option}) is already in use on 127.0.0.1")
        self.port = port
        self.option = option
        self.what = what


def port_in_use(error: OSError) -> bool:
    return error.errno == errno.EADDRINUSE


class RequestGate:
    """Requests pass side by side; `closed()` waits until none is in progress and holds new ones back."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._passing = 0
        self._closed = False

    @contextmanager
    def passing(self) -> Iterator[None]:
        with self._condition:
            while self._closed:
                self._condition.wait()
            self._passing += 1
        try:
            yield
        finally:
            with self._condition:
                self._passing -= 1
                if not self._passing:
                    self._condition.notify_all()

    @contextmanager
    def closed(self, timeout: float) -> Iterator[bool]:
        """Yields True once no request is in progress, False if some were still running after `timeout`
        (an SQS long poll, say); either way the gate opens again when the block ends."""
        with self._condition:
            while self._closed:  # one closer at a time
                self._condition.wait()
            self._closed = True
            quiet = self._condition.wait_for(lambda: self._passing == 0, timeout)
        try:
            yield quiet
        finally:
            with self._condition:
                self._closed = False
                self._condition.notify_all()


class TurnLock:
    """A lock handed to its waiters in the order they came: under contention none waits behind later
    arrivals (threading.Lock promises no order, and a starved request would time out at the client)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def __enter__(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            turn = threading.Event()
            self._waiting.append(turn)
        turn.wait()  # the holder hands the lock over directly: it stays held

    def __exit__(self, *exc: object) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._held = False


@dataclass
class LockWaits:
    """How long DynamoDB requests waited for their turn."""

    requests: int = 0
    seconds: float = 0.0
    longest: float = 0.0


class EmulatorApplication:
    """WSGI middleware around moto's application: the gate, DynamoDB one request at a time, a count of changes."""

    def __init__(self, app: Callable[..., Iterable[bytes]], atomic_dynamodb: bool = True):
        self._app = app
        self.gate = RequestGate()
        self._atomic = atomic_dynamodb
        self._dynamodb: AbstractContextManager[Any] = TurnLock() if atomic_dynamodb else nullcontext()
        self._changes_lock = threading.Lock()
        self.changes = 0  # requests that may have changed the emulator's state, since it started
        self.waits = LockWaits()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if target == RECEIVE_MESSAGE:
            short, wait = _as_short_poll(environ)
            if wait > 0:
                return self._long_poll(environ, start_response, short, wait)
        return self._serve(environ, start_response, target)

    def _long_poll(
        self, environ: dict[str, Any], start_response: Callable[..., Any], short: bytes, wait: float
    ) -> list[bytes]:
        deadline = time.monotonic() + wait
        answered: list[tuple[Any, ...]] = []
        while True:
            answered.clear()
            poll = {**environ, "wsgi.input": io.BytesIO(short), "CONTENT_LENGTH": str(len(short))}
            body = self._serve(poll, lambda *response: answered.append(response), RECEIVE_MESSAGE)
            status = str(answered[0][0]) if answered else ""
            if not status.startswith("200") or b'"ReceiptHandle"' in body[0] or time.monotonic() >= deadline:
                start_response(*answered[0])
                return body
            time.sleep(min(LONG_POLL_EVERY, max(deadline - time.monotonic(), 0)))

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any], target: str) -> list[bytes]:
        dynamodb = target.startswith(DYNAMODB_TARGET)
        with self.gate.passing():
            arrived = time.monotonic()
            with self._dynamodb if dynamodb else nullcontext():
                if dynamodb and self._atomic:
                    self._waited(time.monotonic() - arrived)
                # The whole body is made here, inside the locks: moto builds it eagerly anyway.
                response = self._app(environ, start_response)
                try:
                    body = b"".join(response)
                finally:
                    close = getattr(response, "close", None)
                    if close is not None:
                        close()
            if _may_change(environ, target, body):
                with self._changes_lock:
                    self.changes += 1
        return [body]

    def _waited(self, seconds: float) -> None:  # called holding the DynamoDB lock: no other lock needed
        self.waits.requests += 1
        self.waits.seconds += seconds
        self.waits.longest = max(self.waits.longest, seconds)


def _as_short_poll(environ: dict[str, Any]) -> tuple[bytes, float]:
    """A ReceiveMessage's body with WaitTimeSeconds 0, and the wait it asked for; the request's body is
    put back for whoever reads it next."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return b"", 0
    raw = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(raw)
    try:
        request = json.loads(raw)
        wait = float(request.get("WaitTimeSeconds") or 0)
    except (ValueError, TypeError, AttributeError):
        return raw, 0  # not one to rewrite: moto answers it as it is
    return json.dumps({**request, "WaitTimeSeconds": 0}).encode(), wait


def _may_change(environ: dict[str, Any], target: str, body: bytes) -> bool:
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS") or target in READ_ONLY_ACTIONS:
        return False
    if target == RECEIVE_MESSAGE:
        return b'"ReceiptHandle"' in body  # an empty receive changes nothing
    return True


class MotoServer:
    """moto's server on 127.0.0.1 (never beyond this machine), with the EmulatorApplication in front."""

    def __init__(self, port: int = 0, atomic_dynamodb: bool = True):
        self._port = port
        self._atomic_dynamodb = atomic_dynamodb
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.application: EmulatorApplication | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.application = EmulatorApplication(
            DomainDispatcherApplication(create_backend_app), atomic_dynamodb=self._atomic_dynamodb
        )
        try:
            self._server = make_server("127.0.0.1", self._port, self.application, threaded=True)
        except OSError as error:
            if port_in_use(error):
                raise PortInUse(self._port, "--aws-port", "the AWS endpoint") from None
            raise
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def changes(self) -> int:
        return self.application.changes if self.application else 0

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        if self._server is not None:
            self._server.server_close()
        self._server = None
        self._thread = None
