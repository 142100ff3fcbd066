"""The local stack's moto server, made in one place (`serve()`) and run in a process of its own or in a thread.

What it is, wherever it runs:
- moto's server on 127.0.0.1 only (never moto's default 0.0.0.0: nothing of Herald's listens beyond
  this machine), with moto's backends imported before it answers (a first CloudFormation call would
  otherwise spend its timeout on imports).
- Requests one at a time (`TurnLock`), the most urgent lane's first, then in the order they came.
  moto's DynamoDB checks a condition, then writes, with nothing held in between: two concurrent
  `UpdateItem`s with `attribute_not_exists` can both win (measured: 12-16 of 60 rounds of 10
  concurrent callers had more than one winner). On AWS a conditional write is atomic, and Herald's
  claims and idempotency keys rely on it. Another service's request takes its turn when it is the most
  urgent lane's, or a lower lane's while a more urgent lane's work is under way: moto's work is all in
  one interpreter, and a low lane's request running beside a high one would halve its speed; otherwise
  it goes as it comes (SQS, SNS, SES and CloudFormation side by side, as moto serves them). After a
  lane's request, a less urgent lane's waits briefly for that lane's next one (LANE_HOLD_SECONDS,
  capped): a high-priority batch's calls come a few milliseconds apart. A receive that found no
  message holds no one back; a request of no lane made for a lane's work about to begin (EXPECT_HEADER:
  the API's, for a high-priority notification) holds the less urgent lanes back as the lane's own would.
- A gate every request passes, which a snapshot of the state (herald_local/state.py) closes, so no
  request is half applied in it. So that no request sits in the gate for long, an SQS long poll
  (`WaitTimeSeconds` > 0) is served as a series of short polls, each passing the gate on its own,
  until messages come or the wait is over. Between two short polls on an empty queue it waits,
  outside the gate, for a message to be added to it (moto's own signal), so an idle queue costs moto
  one short poll a second, not ten.
- Its state, when kept: restored before the server answers, snapshotted while it changes and once
  more when it stops, by the process that holds moto's state.

Where it runs (`Placement`):
- PROCESS, the default: `python -m herald_local.emulator`, a child of the stack. moto then has an
  interpreter lock of its own, so on two cores the emulator and Herald's functions run side by side
  instead of taking turns, and its SQS gets a constant-time clock (a backlog otherwise makes every SQS
  call slower). The child prints one JSON line (its port, or why it could not start), serves until
  its standard input closes (the stack stopping, or dying: a kill -9 of the stack closes the pipe
  too) or its parent is gone, then takes its last snapshot and ends. It ignores Ctrl-C, which the
  terminal sends to the whole process group: the stack stops first, then closes the pipe.
- THREAD: a thread of the stack's process (the tests and benchmarks that reach into moto in-process).
"""

from __future__ import annotations

import argparse
import copy
import errno
import functools
import heapq
import io
import itertools
import json
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from dataclasses import asdict, dataclass
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import requests

from herald_local.endpoints import SERVICES
from herald_local.garbage import MOST_SECONDS, FullCollections
from herald_local.state import Restored, Snapshotter, StateError, StateFolder

log = logging.getLogger("herald_local")

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 120  # seconds for the child to import moto, load a kept state and bind its port, on a busy machine
# Seconds the stack waits for its emulator process to take its last snapshot and end: long enough for a
# large state on a busy machine (the snapshot itself gives up waiting for a quiet moment after ~10 s).
STOP_TIMEOUT = 120
PARENT_CHECK_SECONDS = 0.5
FIGURES_PATH = "/herald-local/emulator.json"  # the front's own read-only route: its counters, as JSON
BODY_READ = "herald_local.body_read"  # in a request's environ: its body was read whole off the connection

# ---------------------------------------------------------------- moto's front: the lock, the gate, the long polls

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
LONG_POLL_EVERY = 0.1  # seconds between the short polls of a long poll whose queue cannot be watched
# Most seconds between the short polls of a long poll on an empty queue, which waits for moto's signal
# of a message added (a queue holding messages in flight is polled every LONG_POLL_EVERY: a message
# turning visible again sends no signal)
LONG_POLL_RECHECK = 1.0


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


# The header a lane's request carries (herald_local/precedence.py marks it): its lane's rank, 0 high, 1 normal,
# 2 low. A request without it (the API, the stack's own calls) is of no lane: served first, holding no one back.
LANE_HEADER = "x-herald-lane"
LANE_ENVIRON = "HTTP_X_HERALD_LANE"
# The header a request of no lane carries when it is made for a lane's work about to begin (the API's calls for a
# high-priority notification: herald_local/precedence.py marks them): that lane's rank. Its request is served as
# one of no lane, and holds the less urgent lanes back as the lane's own would (TurnLock.expect).
EXPECT_HEADER = "x-herald-expect"
EXPECT_ENVIRON = "HTTP_X_HERALD_EXPECT"
URGENT = 0
LEAST_URGENT = 2

# After a lane's request is served, less urgent lanes' requests wait this long more for that lane's next one: a
# high-priority batch's calls come a few milliseconds apart (its handler's work in between), and a low request
# slipped into each gap would take its turn, then share the interpreter with the high one. Each request waits for
# such a gap at most HOLD_CAP_SECONDS in all, so a lower lane is slowed, never starved.
LANE_HOLD_SECONDS = 0.02
HOLD_CAP_SECONDS = 0.25


def lane_of(environ: dict[str, Any], header: str = LANE_ENVIRON) -> int | None:
    """The rank a request's LANE_HEADER (or another header of ranks) names, clamped to the lanes there are; None
    when it names none or nonsense."""
    named = environ.get(header)  # most requests name none: no exception raised for them
    if named is None:
        return None
    try:
        return min(max(int(named), URGENT), LEAST_URGENT)
    except ValueError:
        return None


class TurnLock:
    """A lock handed to its waiters by rank, then in the order they came: a high-priority notification's request
    takes the next turn ahead of a flood's queued low ones (as on AWS, where one table's traffic never queues
    behind another's), and within a rank none waits behind later arrivals (threading.Lock promises no order, and
    a starved request would time out at the client). A request of no lane (rank None) is ordered as the most
    urgent and holds no one back.

    Once a lane's request is served, a less urgent lane's request that would be next waits `hold` seconds more
    for that lane's next request (LANE_HOLD_SECONDS), `cap` seconds at most since it came (HOLD_CAP_SECONDS)."""

    def __init__(
        self,
        hold: float = LANE_HOLD_SECONDS,
        cap: float = HOLD_CAP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hold, self.cap = hold, cap
        self._clock = clock
        self._mutex = threading.Lock()
        self._held = False
        self._holder: int | None = None  # the lane of the request holding the lock
        # each waiter's [rank, ticket, its wake-up]: a heap, the next turn first; only the first is woken
        self._queue: list[list[Any]] = []
        self._tickets = itertools.count()
        self._lane_until = [0.0] * (LEAST_URGENT + 1)  # each lane's next request is waited for until then
        self.held_back = 0  # requests that waited for a more urgent lane's next request

    def turn(self, rank: int | None) -> _Turn:
        """The lock, taken at `rank` (0 most urgent; None: no lane)."""
        return _Turn(self, rank)

    def __enter__(self) -> None:
        self.acquire(None)

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self, rank: int | None) -> None:
        order = URGENT if rank is None else rank
        wake_up = threading.Event()
        me: list[Any] = [order, next(self._tickets), wake_up]
        with self._mutex:
            heapq.heappush(self._queue, me)
            give_up = self._clock() + self.cap
        counted = False
        while True:
            with self._mutex:
                wait: float | None = None
                if not self._held and self._queue[0] is me:
                    wait = self._held_back_for(order, give_up)
                    if wait <= 0:
                        heapq.heappop(self._queue)
                        self._held = True
                        self._holder = rank
                        return
                    if not counted:
                        self.held_back += 1
                        counted = True
                wake_up.clear()  # under the lock: a release after it sets it again
            wake_up.wait(wait)

    def _held_back_for(self, rank: int, give_up: float) -> float:
        """How long a request of `rank`, next in line, still waits for a more urgent lane's next request."""
        if rank == URGENT:
            return 0.0
        until = min(max(self._lane_until[:rank]), give_up)
        return max(until - self._clock(), 0.0)

    def expect(self, rank: int) -> None:
        """Lane `rank`'s work is on its way (a request made for it announced it): less urgent lanes' requests are
        held back for its next request, as after one of its own."""
        with self._mutex:
            self._lane_until[rank] = max(self._lane_until[rank], self._clock() + self.hold)

    def release(self, found_work: bool = True) -> None:
        """Hands the lock on. `found_work` False (a receive that found no message): the lane has nothing under way,
        so less urgent lanes are not held back for its next request."""
        with self._mutex:
            if self._holder is not None and found_work:
                self._lane_until[self._holder] = self._clock() + self.hold
            self._held = False
            self._holder = None
            if self._queue:
                self._queue[0][2].set()  # the next in line (a held-back one looks again, and waits on)

    def more_urgent_busy(self, rank: int) -> bool:
        """Whether a lane more urgent than `rank` holds the lock, waits for it, or has its next request awaited."""
        if rank == URGENT:
            return False
        with self._mutex:
            if self._held and self._holder is not None and self._holder < rank:
                return True
            if any(waiting[0] < rank for waiting in self._queue):
                return True
            return max(self._lane_until[:rank]) > self._clock()

    def quiet_for(self, rank: int = URGENT) -> float:
        """Seconds since the lane's last request was served (with its hold); 0 while it is still awaited."""
        with self._mutex:
            return max(self._clock() - self._lane_until[rank], 0.0)


class _Turn:
    def __init__(self, lock: TurnLock, rank: int | None):
        self._lock, self._rank = lock, rank
        self._found_work = True

    def __enter__(self) -> _Turn:
        self._lock.acquire(self._rank)
        return self

    def found_nothing(self) -> None:
        """The request found nothing to do (an empty receive): its lane holds no one back when the turn ends."""
        self._found_work = False

    def __exit__(self, *exc: object) -> None:
        self._lock.release(self._found_work)


@dataclass
class LockWaits:
    """How long requests waited for their turn."""

    requests: int = 0
    seconds: float = 0.0
    longest: float = 0.0


class EmulatorApplication:
    """WSGI middleware around moto's application: the gate, one request at a time by lane, a count of changes."""

    def __init__(self, app: Callable[..., Iterable[bytes]], atomic_dynamodb: bool = True):
        self._app = app
        self.gate = RequestGate()
        # One request at a time, by lane (TurnLock): DynamoDB's writes need it to be atomic; the other services'
        # requests take their turn too, so a lower lane's request never shares the interpreter with a higher one's
        self.turns: TurnLock | None = TurnLock() if atomic_dynamodb else None  # None: requests side by side
        self._changes_lock = threading.Lock()
        self.changes = 0  # requests that may have changed the emulator's state, since it started
        self.short_polls = 0  # the short polls long polls were served as, since it started
        self.message_wakes = 0  # waits of a long poll on an empty queue ended by a message's arrival (not its recheck)
        self.parked_polls = 0  # long polls now waiting on an empty queue for a message's arrival
        self.waits = LockWaits()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        _read_body(environ)
        if environ.get("PATH_INFO") == FIGURES_PATH and environ.get("REQUEST_METHOD") == "GET":
            return self._figures(start_response)
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
        queue = _queue_of(environ, short)
        while True:
            answered.clear()
            held = len(queue._messages) if queue is not None else 0  # read before the poll: no add is missed
            poll = {**environ, "wsgi.input": io.BytesIO(short), "CONTENT_LENGTH": str(len(short))}
            with self._changes_lock:
                self.short_polls += 1
            body = self._serve(poll, lambda *response: answered.append(response), RECEIVE_MESSAGE)
            status = str(answered[0][0]) if answered else ""
            left = deadline - time.monotonic()
            if not status.startswith("200") or _received_messages(body[0]) or left <= 0:
                start_response(*answered[0])
                return body
            if queue is None:
                time.sleep(min(LONG_POLL_EVERY, left))
                continue
            # An empty queue waits for moto's signal of a message added; one holding messages (in flight, or
            # not yet visible) is polled as before, since a message turning visible sends no signal.
            recheck = LONG_POLL_RECHECK if not queue._messages else LONG_POLL_EVERY
            with self._changes_lock:
                self.parked_polls += 1
            try:
                with queue._messages_lock:  # notified by moto on every message added to the queue
                    # (a message added since `held` was read ends the wait at once: none is missed)
                    arrived = queue._messages_lock.wait_for(
                        lambda held=held: len(queue._messages) != held, min(recheck, left)
                    )
            finally:
                with self._changes_lock:
                    self.parked_polls -= 1
            if arrived:
                with self._changes_lock:
                    self.message_wakes += 1

    def _serve(self, environ: dict[str, Any], start_response: Callable[..., Any], target: str) -> list[bytes]:
        with self.gate.passing():
            arrived = time.monotonic()
            with self._turn(environ, target.startswith(DYNAMODB_TARGET)) as turn:
                if turn is not None:
                    self._waited(time.monotonic() - arrived)
                # The whole body is made here, inside the locks: moto builds it eagerly anyway.
                response = self._app(environ, start_response)
                try:
                    body = b"".join(response)
                finally:
                    close = getattr(response, "close", None)
                    if close is not None:
                        close()
                if turn is not None and target == RECEIVE_MESSAGE and not _received_messages(body):
                    turn.found_nothing()
            if _may_change(environ, target, body):
                with self._changes_lock:
                    self.changes += 1
        return [body]

    def _turn(self, environ: dict[str, Any], dynamodb: bool) -> AbstractContextManager[_Turn | None]:
        """The request's turn (entering it gives the turn), or nothing (None). Every DynamoDB request takes one, and
        every request of the most urgent lane: it is served ahead of the lower lanes' queued requests, alone, and
        holds them back for its lane's next request. Another service's request of a lower lane takes one when it
        comes while a more urgent lane's work is under way, so it waits for that work instead of running beside it
        (a request of no lane, or with no lane above it busy, goes as it comes, as moto serves it)."""
        turns = self.turns
        if turns is None:
            return nullcontext(None)
        expected = lane_of(environ, EXPECT_ENVIRON)
        if expected is not None:
            turns.expect(expected)
        lane = lane_of(environ)
        if dynamodb or lane == URGENT or (lane is not None and turns.more_urgent_busy(lane)):
            return turns.turn(lane)
        return nullcontext(None)

    def figures(self) -> dict[str, Any]:
        turns = self.turns
        return {
            "atomic_dynamodb": turns is not None,
            "changes": self.changes,
            "short_polls": self.short_polls,
            "message_wakes": self.message_wakes,
            "parked_polls": self.parked_polls,
            "lock_waits": asdict(self.waits),
            "held_back": turns.held_back if turns is not None else 0,
        }

    def _figures(self, start_response: Callable[..., Any]) -> list[bytes]:
        body = json.dumps(self.figures()).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
        return [body]

    def _waited(self, seconds: float) -> None:  # called holding the turn: no other lock needed
        self.waits.requests += 1
        self.waits.seconds += seconds
        self.waits.longest = max(self.waits.longest, seconds)


def _read_body(environ: dict[str, Any]) -> None:
    """Reads the request's body off the connection before anything is served: the connection is then
    ready for its next request, and may stay open (KeepAliveHandler)."""
    if environ.get("wsgi.input_terminated"):  # chunked: the connection closes after this request
        return
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    body = environ["wsgi.input"].read(length) if length > 0 else b""
    environ["wsgi.input"] = io.BytesIO(body)
    environ[BODY_READ] = True


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


def _queue_of(environ: dict[str, Any], request: bytes) -> Any:
    """moto's queue a ReceiveMessage reads (its URL ends in /<account>/<name>; the region is the
    signature's), or None if it cannot be told or does not exist (moto then answers as it will)."""
    try:
        from moto.sqs.models import sqs_backends

        account, name = str(json.loads(request)["QueueUrl"]).rstrip("/").split("/")[-2:]
        region = environ.get("HTTP_AUTHORIZATION", "").split("Credential=", 1)[1].split("/")[2]
        return sqs_backends[account][region].queues.get(name)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None


def _received_messages(body: bytes) -> bool:
    """Whether a ReceiveMessage's answer holds messages (each comes with its receipt handle)."""
    return b'"ReceiptHandle"' in body


def _may_change(environ: dict[str, Any], target: str, body: bytes) -> bool:
    if environ.get("REQUEST_METHOD") in ("GET", "HEAD", "OPTIONS") or target in READ_ONLY_ACTIONS:
        return False
    if target == RECEIVE_MESSAGE:
        return _received_messages(body)  # an empty receive changes nothing
    return True


def keep_alive_handler() -> type:
    """werkzeug's request handler, keeping a connection open for the client's next request.

    werkzeug 3 closes every connection after one request (`Connection: close`): Python's http.server
    cannot drain a body an application left unread before the next request line, and werkzeug then
    reads whatever else the client sent. Otherwise each call of every boto3 client opens a TCP
    connection and costs the server a thread of its own. Here the front reads every body whole
    before anything is served (`_read_body`) and answers with the whole body made, so the response
    is written with its length and the connection stays open, as AWS's endpoints keep it. A request
    whose body was not read (chunked), or whose handling failed, still closes its connection.
    """
    from werkzeug.serving import WSGIRequestHandler

    class KeepAliveHandler(WSGIRequestHandler):
        def run_wsgi(self) -> None:
            self.environ = environ = self.make_environ()
            answered: list[Any] = []

            def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                answered[:] = [status, headers]
                return None

            try:
                body = b"".join(self.server.app(environ, start_response))
                status, headers = answered
            except Exception:
                # Logged as werkzeug logs it, so quiet_emulator's filter and level apply (the redrive's probe)
                self.server.log("error", f"Error on request {self.command} {self.path}:\n{traceback.format_exc()}")
                self.close_connection = True
                self.send_error(500)
                return
            code, _, reason = str(status).partition(" ")
            bodiless = int(code) in (204, 304) or int(code) < 200 or self.command == "HEAD"
            self.send_response(int(code), reason)
            for name, value in headers:
                if name.lower() not in ("content-length", "connection", "transfer-encoding"):
                    self.send_header(name, value)
            if not bodiless:
                self.send_header("Content-Length", str(len(body)))
            if not environ.get(BODY_READ):
                self.send_header("Connection", "close")
            # Headers and body in one write: written apart, the body of a kept-alive connection waited for
            # the client's delayed ACK of the headers (Nagle), up to 40 ms an answer.
            self._headers_buffer.append(b"\r\n")  # what end_headers() adds
            if not bodiless:
                self._headers_buffer.append(body)
            self.flush_headers()

        def setup(self) -> None:
            super().setup()
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            # werkzeug formats every request's line (its path decoded, a timestamp) before its logger drops
            # it: quiet_emulator sets that logger to ERROR. Formatted only when it would be written.
            if logging.getLogger("werkzeug").isEnabledFor(logging.INFO):
                super().log_request(code, size)

    return KeepAliveHandler


class MotoServer:
    """moto's server on 127.0.0.1 (never beyond this machine), with the EmulatorApplication in front."""

    def __init__(
        self,
        port: int = 0,
        atomic_dynamodb: bool = True,
        port_option: str = "--aws-port",
        port_role: str = "the AWS endpoint",
    ):
        self._port = port
        self._atomic_dynamodb = atomic_dynamodb
        self._port_option = port_option
        self._port_role = port_role
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.application: EmulatorApplication | None = None

    def start(self) -> None:
        from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.application = EmulatorApplication(
            DomainDispatcherApplication(create_backend_app), atomic_dynamodb=self._atomic_dynamodb
        )
        # Bound here, not by werkzeug: on a taken port it prints two lines and exits the whole process.
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as HTTP servers do: TIME_WAIT is fine
            try:
                listener.bind(("127.0.0.1", self._port))
            except OSError as error:
                if port_in_use(error):
                    raise PortInUse(self._port, self._port_option, self._port_role) from None
                raise
            listener.listen(128)
            # werkzeug serves a duplicate of this socket; this one closes at the end of the block
            self._server = make_server(
                "127.0.0.1",
                self._port,
                self.application,
                threaded=True,
                request_handler=keep_alive_handler(),
                fd=listener.fileno(),
            )
        self._thread = threading.Thread(target=self._server.serve_forever, name="moto-server", daemon=True)
        self._thread.start()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "start() the server first"
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
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


# ---------------------------------------------------------------- what runs moto, wherever it runs


def _expected_by_redrive(record: logging.LogRecord) -> bool:
    """False for the traceback moto's server prints when asked for a message-move task it lacks: Herald's
    redrive asks once, expecting that answer, then falls back (and says so in its own answer)."""
    message = record.getMessage()
    return not ("NotImplementedError" in message and "message_move_task" in message)


def quiet_emulator() -> None:
    """moto logs every request and warns about each resource type it skips: noise for a developer."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    if _expected_by_redrive not in logging.getLogger("werkzeug").filters:
        logging.getLogger("werkzeug").addFilter(_expected_by_redrive)
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)


def constant_time_clock() -> bool:
    """Gives moto's SQS a constant-time clock; True when applied.

    moto 5.2 computes "now" through two datetime conversions (about 12 us) and does so for every
    message of a queue on every SQS call (visibility checks, attribute counts): at 2,000 messages a
    single call costs a second of CPU. time.time() gives the same milliseconds since the epoch. The
    scans stay; their cost drops about tenfold. Semantics are unchanged. It patches moto for the
    whole process: the emulator's own process applies it; a stack with moto in a thread does not.
    """
    import moto.core.utils
    import moto.sqs.models

    if moto.sqs.models.unix_time_millis is not moto.core.utils.unix_time_millis:
        return moto.sqs.models.unix_time_millis is _milliseconds_now  # already applied, or moto changed
    moto.sqs.models.unix_time_millis = _milliseconds_now
    return True


def lighten_moto() -> list[str]:
    """Cuts work moto 5.2 repeats on every request without changing any answer; returns what it applied.

    Measured with py-spy on the emulator process under load (docs/performance.md): these were pure
    waste. Like the clock, it patches moto for the whole process: the emulator's own process applies it.
    - Every request looks its host up among moto's modules by listing moto's package directory and
      testing each entry with isdir. The listing is the same every time: it is kept.
    - Every request lists its handler class's methods with inspect.getmembers. A class's methods do
      not change while it serves: they are kept per class.
    - Every UpdateItem parses its UpdateExpression twice from scratch. The parse depends on the
      string alone, and moto deep-copies the tree before it validates or applies it: parses are kept
      (the last 256 expressions).
    - Every UpdateItem then deep-copies that parsed tree (copy.deepcopy, about 0.2 ms for a claim's
      expression) so that its validation can fill the copy with this request's values. A kept tree
      never changes (only copies are validated), so it is pickled once when parsed and each copy is
      unpickled from those bytes: the same tree, several times faster.
    - Each of the ten passes that validate an UpdateItem's tree asks, for every node, whether the node
      is a tree node and whether the pass processes it: two isinstance checks through ABCMeta against
      a tuple the pass rebuilds from a new dict each time. Both answers depend on the node's class and
      the pass's class alone (moto's passes name their node classes in a literal dict; nothing is
      registered on an ABC), so they are kept per pair of classes; the walk is otherwise moto's own.
    - Three of those passes check the expression's shape alone (at most one SET, REMOVE and ADD
      clause; no path set twice; no key attribute updated): they read the tree, the attribute names
      and the table's key attributes, change nothing, and raise on a fault. moto runs the first two
      on every clause of the tree, each listing the tree's clauses again (quadratic: half of an
      UpdateItem's validation). Once they have passed for a kept tree with the same names and key
      attributes, they pass again and are skipped; a fault is never remembered, so a faulty request
      raises what it raised. The passes that read the item and the values always run.
    - Every conditional write lexes its ConditionExpression from scratch, character by character with
      a dozen regular expressions compiled each time. The tokens depend on the string alone and are
      immutable (namedtuples): they are kept per string (the last 256), and each parse gets its own
      queue of them, as it consumes the queue.
    - Every SQS ReceiveMessage reads each candidate message's retention period through
      GetQueueAttributes, which computes every attribute of the queue, message counts included (a
      scan of the whole queue, per message). It reads the queue's retention period itself instead.
    - Every message sent (SendMessage, each entry of a batch, each delivery of an SNS publish to a
      queue) reads the queue's ContentBasedDeduplication the same way: three scans of the queue, so a
      publish of 10 deliveries into a low-priority queue 4,000 deep took tens of milliseconds. While a
      message is sent, the queue's attributes are that one attribute, as moto renders it (a FIFO
      queue's "true"/"false"; a standard queue has none).
    """
    import moto.backends
    import moto.core.responses
    import moto.sqs.models
    from moto.dynamodb import comparisons
    from moto.dynamodb.parsing import ast_nodes, expressions, validators

    applied = []
    if not hasattr(moto.backends.list_of_moto_modules, "cache_info"):
        modules = tuple(moto.backends.list_of_moto_modules())
        moto.backends.list_of_moto_modules = functools.cache(lambda: modules)
        applied.append("moto's module list kept")
    if not hasattr(moto.core.responses.method_names_from_class, "cache_info"):
        moto.core.responses.method_names_from_class = functools.cache(moto.core.responses.method_names_from_class)
        applied.append("handler methods kept per class")
    parser: Any = expressions.UpdateExpressionParser  # type: ignore[attr-defined]  # not in moto's __all__
    make = parser.__dict__["make"]
    if isinstance(make, classmethod) and not hasattr(make.__func__, "cache_info"):
        parser.make = classmethod(functools.lru_cache(maxsize=256)(_pickled_when_parsed(make.__func__)))
        applied.append("update expressions parsed once")
    if validators.deepcopy is copy.deepcopy:  # the name moto's validators copy a tree with
        validators.deepcopy = _copy_of_tree
        applied.append("parsed trees copied from their pickle")
    condition_parser: Any = comparisons.ConditionExpressionParser
    if not getattr(condition_parser._lex_condition_expression, "lightened", False):
        condition_parser._lex_condition_expression = _lexed_from_kept_tokens(condition_parser)
        applied.append("condition expressions lexed once")
    update_validator: Any = validators.UpdateExpressionValidator
    if not getattr(update_validator.validate, "lightened", False):
        update_validator.__init__ = _init_update_validator(update_validator.__init__)
        update_validator.validate = _validate_update
        applied.append("an expression's shape checked once")
    traverser: Any = ast_nodes.DepthFirstTraverser
    if not getattr(traverser.traverse_node_recursively, "lightened", False):
        traverser.traverse_node_recursively = _traverse_node_recursively
        applied.append("tree passes know which nodes they process")
    backend = moto.sqs.models.SQSBackend
    if not getattr(backend.is_message_valid_based_on_retention_period, "lightened", False):
        backend.is_message_valid_based_on_retention_period = _retained  # type: ignore[method-assign,assignment]
        applied.append("retention read from the queue")
    if not getattr(backend.send_message, "lightened", False):
        queue: Any = moto.sqs.models.Queue
        queue.attributes = _attributes_but_while_sending(queue.attributes)
        backend.send_message = _sending(backend.send_message)  # type: ignore[method-assign]
        applied.append("a send reads the queue's deduplication setting alone")
    return applied


_sending_to = threading.local()  # the queue a thread's moto is sending a message to, if any


def _sending(send_message: Callable[..., Any]) -> Callable[..., Any]:
    """moto's send_message, the queue's attributes meanwhile reduced to what it reads of them."""

    @functools.wraps(send_message)
    def sending(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = backend.get_queue(queue_name)  # what moto does first: an unknown queue raises as before
        before = getattr(_sending_to, "queue", None)
        _sending_to.queue = queue
        try:
            return send_message(backend, queue_name, *args, **kwargs)
        finally:
            _sending_to.queue = before

    sending.lightened = True  # type: ignore[attr-defined]
    return sending


def _attributes_but_while_sending(attributes: property) -> property:
    """moto's Queue.attributes, except for the queue a message is being sent to in this thread: its
    ContentBasedDeduplication alone (all that moto's send reads), without counting its messages."""

    def reduced(queue: Any) -> dict[str, Any]:
        if getattr(_sending_to, "queue", None) is not queue:
            return attributes.fget(queue)  # type: ignore[misc,no-any-return]
        if not queue.fifo_queue:
            return {}
        value = queue.content_based_deduplication
        return {"ContentBasedDeduplication": str(value).lower() if isinstance(value, bool) else value}

    return property(reduced)


def _retained(backend: Any, queue_name: str, message: Any) -> bool:
    """moto's own test (retention period plus the message's sent time, against now), without computing
    every attribute of the queue to read one."""
    retention_period = int(backend.get_queue(queue_name).message_retention_period)
    return bool(retention_period + message.sent_timestamp / 1000 > time.time())


_retained.lightened = True  # type: ignore[attr-defined]

# Each parsed UpdateExpression tree kept by the parser's cache, pickled once: a tree leaves these bytes when
# the cache lets it go (weak keys; moto's nodes compare and hash by identity).
_PICKLED_TREES: weakref.WeakKeyDictionary[Any, bytes] = weakref.WeakKeyDictionary()
_PICKLED_LOCK = threading.Lock()


def _pickled_when_parsed(parse: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    def parsed(parser: Any, expression: str) -> Any:
        tree = parse(parser, expression)
        with _PICKLED_LOCK:
            _PICKLED_TREES[tree] = pickle.dumps(tree, protocol=pickle.HIGHEST_PROTOCOL)
        return tree

    return parsed


def _copy_of_tree(value: Any, memo: dict[int, Any] | None = None) -> Any:
    """copy.deepcopy, from the pickle of a kept parse when `value` is one: pickle rebuilds the same
    objects with the same attributes (the parent links included), as deepcopy does, in C."""
    pickled = _PICKLED_TREES.get(value) if memo is None and _is_tree_node(value) else None
    if pickled is not None:
        return pickle.loads(pickled)
    return copy.deepcopy(value, memo)


def _lexed_from_kept_tokens(parser_class: Any) -> Callable[[Any], deque[Any]]:
    """moto's ConditionExpressionParser._lex_condition_expression, from the tokens kept for its string."""
    lex = parser_class._lex_condition_expression

    @functools.lru_cache(maxsize=256)
    def tokens(expression: str) -> tuple[Any, ...]:
        return tuple(lex(parser_class(expression, None, None)))  # lexing reads the expression alone

    def lexed(parser: Any) -> deque[Any]:
        return deque(tokens(parser.condition_expression))

    lexed.lightened = True  # type: ignore[attr-defined]
    return lexed


# A kept parse -> the (attribute names, table key attributes) its shape passed moto's shape checks with
_SHAPES_PASSED: weakref.WeakKeyDictionary[Any, set[tuple[frozenset[tuple[str, str]], tuple[str, ...]]]] = (
    weakref.WeakKeyDictionary()
)


def _init_update_validator(init: Callable[..., None]) -> Callable[..., None]:
    """moto's own __init__, then the kept parse the validator's tree was copied from, if it is one."""

    def initialised(validator: Any, expression: Any, *args: Any, **kwargs: Any) -> None:
        init(validator, expression, *args, **kwargs)
        with _PICKLED_LOCK:
            kept = expression in _PICKLED_TREES if _is_tree_node(expression) else False
        validator.kept_tree = expression if kept else None

    return initialised


def _validate_update(validator: Any) -> Any:
    """moto's Validator.validate for an UpdateExpression: its passes in its order, except the shape
    checks a kept parse already passed with the same names and key attributes (lighten_moto)."""
    from moto.dynamodb.parsing.validators import (
        ActionCountValidator,
        OverlappingPathsValidator,
        UpdateHashRangeKeyValidator,
    )

    shape_checks = (ActionCountValidator, OverlappingPathsValidator, UpdateHashRangeKeyValidator)
    kept = validator.kept_tree
    shape = (
        frozenset((validator.expression_attribute_names or {}).items()),
        tuple(validator.table.table_key_attrs),
    )
    with _PICKLED_LOCK:
        passed = kept is not None and shape in _SHAPES_PASSED.get(kept, ())
    node = validator.node_to_validate
    for processor in validator.processors:
        if passed and isinstance(processor, shape_checks):
            continue
        node = processor.traverse(node)
    if kept is not None and not passed:  # every pass ran without a fault, the shape checks among them
        with _PICKLED_LOCK:
            _SHAPES_PASSED.setdefault(kept, set()).add(shape)
    return node


_validate_update.lightened = True  # type: ignore[attr-defined]

_NODE_CLASSES: dict[type, bool] = {}  # a class -> whether its instances are moto's tree nodes


def _is_tree_node(value: Any) -> bool:
    kind = type(value)
    is_node = _NODE_CLASSES.get(kind)
    if is_node is None:
        from moto.dynamodb.parsing.ast_nodes import Node  # once per class: an import per call costs a lookup

        is_node = _NODE_CLASSES[kind] = isinstance(value, Node)
    return is_node


_PROCESSED: dict[tuple[type, type], bool] = {}  # (a pass's class, a node's class) -> whether it processes it


def _traverse_node_recursively(traverser: Any, node: Any, child_id: int = -1) -> Any:
    """moto's DepthFirstTraverser.traverse_node_recursively, step for step, with its two isinstance
    answers kept per class (lighten_moto's docstring: they depend on the classes alone)."""
    kind = type(node)
    if _is_tree_node(node):
        parent_node = node.parent
        if node.children is not None:
            for i, child_node in enumerate(node.children):
                traverser.pre_processing_of_child(node, i)
                traverser.traverse_node_recursively(child_node, i)
        pair = (type(traverser), kind)
        processed = _PROCESSED.get(pair)
        if processed is None:
            processed = _PROCESSED[pair] = isinstance(node, traverser.nodes_to_be_processed())
        if processed:
            node = traverser.process(node)
            node.parent = parent_node
            if parent_node:
                parent_node.children[child_id] = node
    return node


_traverse_node_recursively.lightened = True  # type: ignore[attr-defined]


def _milliseconds_now(dt: datetime | None = None) -> float:
    if dt is not None:
        import moto.core.utils

        return float(moto.core.utils.unix_time_millis(dt))
    return time.time() * 1000.0


@dataclass(frozen=True)
class EmulatorSettings:
    """What the stack asks of its emulator: the same in both placements."""

    port: int = 0  # on 127.0.0.1; 0 picks a free one
    atomic_dynamodb: bool = True  # False only to measure what the lock costs, or to show the race
    # The folder whose snapshot is restored and kept (herald_local/state.py); None: in memory only. The
    # stack holds the folder's lock and discards the snapshot for --fresh before its emulator starts.
    state_dir: Path | None = None
    snapshot_seconds: float = 1.0  # how often the state is saved while it changes
    port_option: str = "--aws-port"  # how a developer picks the port, named when it is taken
    port_role: str = "the AWS endpoint"


class Served:
    """An emulator serving in this process: moto's server behind its front, and its snapshots."""

    def __init__(self, server: MotoServer, snapshotter: Snapshotter | None, restored: Restored | None):
        self.server = server
        self.snapshotter = snapshotter
        self.restored = restored

    def stop(self) -> None:
        """The last snapshot (nothing of the stack runs any more), then the server."""
        try:
            if self.snapshotter is not None:
                self.snapshotter.stop()
        finally:
            self.server.stop()


# How long a thread holding the interpreter lock keeps it while another waits (Python's default: 5 ms).
# The local stack's threads mostly wait on sockets; one woken by a message (a long poll answered, a high-priority
# batch handed out) otherwise waits up to 5 ms behind a CPU-bound thread of a flood, which is the whole of a
# queue's idle wait here. 1 ms hands the lock over sooner, at the price of more switches under load.
SWITCH_INTERVAL_SECONDS = 0.001


def hand_over_promptly() -> None:
    """Shortens this process's interpreter-lock switch interval (SWITCH_INTERVAL_SECONDS), never lengthens it."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))


def serve(settings: EmulatorSettings) -> Served:
    """The emulator, serving: its kept state restored first, then moto's server started, then its snapshots."""
    from moto.backends import get_backend

    quiet_emulator()
    hand_over_promptly()
    # moto imports a service's backend on its first request: seconds, which would count against the
    # first call's timeout (CloudFormation's, which touches them all). Here they overlap the stack's start.
    for service in SERVICES:
        get_backend(service)  # type: ignore[call-overload]
    folder = StateFolder(settings.state_dir) if settings.state_dir is not None else None
    restored = folder.restore() if folder is not None else None  # before the server answers anything
    server = MotoServer(settings.port, settings.atomic_dynamodb, settings.port_option, settings.port_role)
    server.start()
    snapshotter = Snapshotter(server, folder, settings.snapshot_seconds).start() if folder is not None else None
    return Served(server, snapshotter, restored)


class Placement(StrEnum):
    PROCESS = "process"  # a child process of its own (the default)
    THREAD = "thread"  # a thread of the stack's process


class Emulator(Protocol):
    """The emulator as the stack holds it, wherever it runs."""

    @property
    def endpoint(self) -> str: ...

    @property
    def restored(self) -> Restored | None: ...

    def running(self) -> bool: ...

    def stop(self) -> None: ...


class ThreadEmulator:
    """The emulator in a thread of this process."""

    def __init__(self, settings: EmulatorSettings):
        self._served = serve(settings)
        self.endpoint = self._served.server.url
        self.restored = self._served.restored

    @property
    def application(self) -> EmulatorApplication | None:
        """moto's front, in this process (its counters; its gate, for a test)."""
        return self._served.server.application

    def running(self) -> bool:
        return True

    def stop(self) -> None:
        self._served.stop()


class ProcessEmulator:
    """The emulator in a child process (`python -m herald_local.emulator`). Starting returns at once;
    `endpoint` waits for the child's first line, so the caller can do other work meanwhile.

    `held_fds` are passed open to the child: the state folder's lock, so that the folder stays taken
    while the child saves its last snapshot, even when the stack itself was killed."""

    def __init__(self, settings: EmulatorSettings, held_fds: tuple[int, ...] = ()):
        self.settings = settings
        arguments = ["--port", str(settings.port), "--parent", str(os.getpid())]
        if settings.state_dir is not None:
            arguments += ["--state-dir", str(settings.state_dir), "--snapshot-seconds", str(settings.snapshot_seconds)]
        if not settings.atomic_dynamodb:
            arguments.append("--racy-dynamodb")
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "functions"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._child = subprocess.Popen(
            [sys.executable, "-m", "herald_local.emulator", *arguments],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=held_fds,
        )
        self._hello: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._started()['port']}"

    @property
    def restored(self) -> Restored | None:
        restored = self._started().get("restored")
        return Restored(**restored) if restored else None

    def _started(self) -> dict[str, Any]:
        """The child's first line: where it serves, or why it could not start (raised here, in one line)."""
        if self._hello is None:
            assert self._child.stdout is not None
            line = _read_line(self._child.stdout, STARTUP_TIMEOUT)
            try:
                hello = json.loads(line)
            except ValueError:
                hello = {"error": f"the emulator process did not start (it said {line!r})"}
            if "port" not in hello:
                self.stop()
                if "port_in_use" in hello:
                    raise PortInUse(hello["port_in_use"], self.settings.port_option, self.settings.port_role)
                if hello.get("state"):
                    raise StateError(hello["error"])
                raise RuntimeError(hello["error"])
            self._hello = hello
        return self._hello

    def running(self) -> bool:
        return self._child.poll() is None

    @property
    def exit_code(self) -> int | None:
        return self._child.poll()

    def stop(self) -> None:
        """Closes the child's standard input: it takes its last snapshot and ends (killed if it does not)."""
        if self._child.stdin and not self._child.stdin.closed:
            with suppress(BrokenPipeError):  # it has ended already
                self._child.stdin.close()
        try:
            self._child.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            log.warning("the emulator process did not end in %s s: killed, its last changes unsaved", STOP_TIMEOUT)
            self._child.kill()
            self._child.wait()
        if self._child.stdout:
            self._child.stdout.close()


def _read_line(stream: Any, timeout: float) -> str:
    """The child's first line, or "" if it says nothing within `timeout` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    line: str = stream.readline()
    return line


def start_emulator(placement: Placement, settings: EmulatorSettings, held_fds: tuple[int, ...] = ()) -> Emulator:
    if placement is Placement.THREAD:
        return ThreadEmulator(settings)
    return ProcessEmulator(settings, held_fds)


def emulator_figures(endpoint: str) -> dict[str, Any]:
    """The front's counters (changes, DynamoDB's waits for its turn), read from the emulator at `endpoint`."""
    answer = requests.get(f"{endpoint.rstrip('/')}{FIGURES_PATH}", timeout=10)
    answer.raise_for_status()
    figures: dict[str, Any] = answer.json()
    return figures


# ---------------------------------------------------------------- the child process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herald_local.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--state-dir", type=Path, help="restore the snapshot kept here, and keep the state here")
    parser.add_argument("--snapshot-seconds", type=float, default=1.0, help="how often the state is saved")
    parser.add_argument("--racy-dynamodb", action="store_true", help="DynamoDB requests side by side, as moto comes")
    parser.add_argument("--parent", type=int, help="the stack's pid: when it is gone, this ends too")
    arguments = parser.parse_args(argv)
    stop = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this stops
    signal.signal(signal.SIGTERM, lambda *_: stop.set())  # a clean stop: the last snapshot is taken
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    constant_time_clock()  # this process is moto's alone
    lighten_moto()
    settings = EmulatorSettings(
        port=arguments.port,
        atomic_dynamodb=not arguments.racy_dynamodb,
        state_dir=arguments.state_dir,
        snapshot_seconds=arguments.snapshot_seconds,
    )
    try:
        served = serve(settings)
    except PortInUse as error:
        _say({"error": str(error), "port_in_use": error.port})
        return 2
    except StateError as error:
        _say({"error": str(error), "state": True})
        return 2
    # This process holds moto's state: its full garbage collections wait for the high lane to be quiet
    turns = served.server.application.turns if served.server.application is not None else None
    collections = FullCollections(turns.quiet_for if turns is not None else lambda: MOST_SECONDS).start()
    port = served.server.address[1]
    _say({"port": port, "restored": asdict(served.restored) if served.restored else None})
    threading.Thread(target=_until_input_ends, args=(stop,), name="parent-pipe", daemon=True).start()
    while not stop.wait(PARENT_CHECK_SECONDS):
        if arguments.parent is not None and os.getppid() != arguments.parent:
            break  # the parent is gone and something else holds the pipe open (a process it forked)
    collections.stop()
    served.stop()
    return 0


def _say(message: dict[str, Any]) -> None:
    print(json.dumps(message), flush=True)


def _until_input_ends(stop: threading.Event) -> None:
    sys.stdin.read()  # until the parent closes it, or its end is closed for it (the parent died)
    stop.set()


if __name__ == "__main__":
    sys.exit(main())
