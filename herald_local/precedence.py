"""CPU precedence for the higher priority lanes: a lower lane's work waits while a higher lane's batch is in flight.

On AWS each lane's mapping and function get machines of their own; here every lane's handlers share one
interpreter (and, embedded, the emulator) on two cores, so a flood on the low lane slows a high-priority
notification's fan-out and delivery even though it never waits behind a low message in any queue. This
gives back what AWS gives for free, cooperatively. A lane is busy while it has a batch in flight (from
its receive until its messages are deleted) or a message was just sent to one of its queues (`expect`).
While a more urgent lane is busy, a lower lane's poller waits before each receive, before it starts a
batch and before it deletes one, and the lower lane's functions wait before each AWS call (their
containers get lane clients: `clients_for`, `GivingWay`).

Each wait is capped (`WAIT_CAP_SECONDS`), so a lower lane is slowed, never starved: under a steady stream
of high-priority work each of its threads still makes one AWS call per cap. The API's requests and the
most urgent lane never wait.

A call let through before a higher lane became busy would still run beside its work: every lane's request
names its lane (`mark_lanes`, LANE_HEADER), and the emulator serves one request at a time, the most urgent
lane's first, holding a lower lane's back for a few milliseconds after a higher lane's request, for its next
(herald_local.emulator.TurnLock)."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from herald_local.emulator import EXPECT_HEADER, LANE_HEADER

# The longest one wait lasts. A high-priority batch takes tens of milliseconds here, so a wait usually ends
# when it does; the cap only matters when high-priority work never stops. A low deliver batch (50 records,
# 2 at once, four or five calls each: about 125 calls one after another) is then slowed by about 30 s at
# most: far within the low queue's 180 s visibility timeout, so no message comes back while its batch
# still runs (it may run past the function's 30 s timeout, which the local stack does not enforce).
WAIT_CAP_SECONDS = 0.25

# How long a message sent to a lane's queue holds lower lanes back before its batch is received (`expect`):
# the lane's poller, long-polling, usually receives it within tens of milliseconds.
EXPECT_SECONDS = 0.25

# A lane's rank from its queue's logical id in template.yaml: lower is more urgent. Queues of no lane (the
# feedback and schedule queues) have no rank: their work neither waits nor holds anyone up.
LANE_RANKS = {"High": 0, "Normal": 1, "Low": 2}
LANES = len(LANE_RANKS)


def lane_rank(queue: str) -> int | None:
    """The rank of the lane a queue belongs to (HighIntakeQueue and HighQueue: 0), or None."""
    for prefix, rank in LANE_RANKS.items():
        if queue.startswith(prefix):
            return rank
    return None


def priority_rank(body: bytes) -> int | None:
    """The rank of the lane a notification posted to the API (its JSON body) goes to, or None if it names none
    that is known or is not JSON (the API answers it; the lanes need not wait)."""
    try:
        priority = json.loads(body).get("priority", "normal")
    except (ValueError, AttributeError):
        return None
    return LANE_RANKS.get(priority.capitalize()) if isinstance(priority, str) else None


def function_ranks(sources: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Each function's rank, from its (function, queue) event sources: the most urgent lane it serves."""
    ranks: dict[str, int] = {}
    for function, queue in sources:
        rank = lane_rank(queue)
        if rank is not None:
            ranks[function] = min(rank, ranks.get(function, rank))
    return ranks


@dataclass
class Yields:
    """How often a lane's work waited for a higher lane, and for how long in all."""

    count: int = 0
    seconds: float = 0.0
    capped: int = 0  # waits that ended at the cap, the higher lane still busy


class LanePrecedence:
    """Which lanes have a batch in flight, shared by every poller of one stack; lower lanes wait on higher ones."""

    def __init__(
        self, enabled: bool = True, wait_cap: float = WAIT_CAP_SECONDS, clock: Callable[[], float] = time.monotonic
    ):
        self.enabled = enabled
        self.wait_cap = wait_cap
        self._clock = clock
        self._in_flight = [0] * LANES
        self._waiting = [0] * LANES
        self._expected_until = [0.0] * LANES  # a lane's message was sent: its batch is about to begin
        self._last_ended = [clock()] * LANES  # when a lane last had no batch in flight any more
        self._changed = threading.Condition()
        self._yields = [Yields() for _ in range(LANES)]

    def begin(self, rank: int | None) -> None:
        """A batch of the lane was received: lower lanes wait until it ends."""
        if rank is None:
            return
        with self._changed:
            self._in_flight[rank] += 1
            self._expected_until[rank] = 0.0

    def expect(self, rank: int | None) -> None:
        """A message was sent to the lane's queue: lower lanes wait as if its batch were in flight already, until
        the lane's poller receives a batch or `EXPECT_SECONDS` pass, whichever is first."""
        if rank is None:
            return
        with self._changed:
            self._expected_until[rank] = self._clock() + EXPECT_SECONDS

    def end(self, rank: int | None) -> None:
        if rank is None:
            return
        with self._changed:
            self._in_flight[rank] -= 1
            if not self._in_flight[rank]:
                self._last_ended[rank] = self._clock()
            self._changed.notify_all()

    def quiet_for(self, rank: int) -> float:
        """Seconds the lane has had no batch in flight and no message just sent to its queue (0: it has)."""
        with self._changed:
            now = self._clock()
            if self._in_flight[rank] or self._expected_until[rank] > now:
                return 0.0
            return now - max(self._last_ended[rank], self._expected_until[rank])

    @property
    def in_flight(self) -> tuple[int, ...]:
        """Batches in flight per rank, most urgent first."""
        with self._changed:
            return tuple(self._in_flight)

    @property
    def waiting(self) -> tuple[int, ...]:
        """Threads giving way right now, per rank."""
        with self._changed:
            return tuple(self._waiting)

    @contextmanager
    def running(self, rank: int | None) -> Iterator[None]:
        """The block counts as a batch of the lane in flight."""
        self.begin(rank)
        try:
            yield
        finally:
            self.end(rank)

    def _higher_busy(self, rank: int) -> bool:
        return any(self._in_flight[:rank]) or self._higher_expected(rank) > 0

    def _higher_expected(self, rank: int) -> float:
        """Seconds until the last expectation of a lane more urgent than `rank` lapses (0: none)."""
        return max(max(self._expected_until[:rank], default=0.0) - self._clock(), 0.0)

    def give_way(self, rank: int | None) -> float:
        """Waits while a lane more urgent than `rank` has a batch in flight, at most `wait_cap`; the seconds waited."""
        if rank is None or rank == 0 or not self.enabled:
            return 0.0
        with self._changed:
            if not self._higher_busy(rank):
                return 0.0
            started = self._clock()
            deadline = started + self.wait_cap
            self._waiting[rank] += 1
            try:
                while self._higher_busy(rank):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        break
                    # an expectation lapses without a notification: wake up for it
                    expected = self._higher_expected(rank)
                    self._changed.wait(min(remaining, expected) if expected > 0 else remaining)
            finally:
                self._waiting[rank] -= 1
            waited = self._clock() - started
            yields = self._yields[rank]
            yields.count += 1
            yields.seconds += waited
            yields.capped += self._higher_busy(rank)
            return waited

    def yields(self, rank: int) -> Yields:
        """What the lane's work has waited so far (a copy)."""
        with self._changed:
            return Yields(**vars(self._yields[rank]))

    def announce_sends(self, sqs: Any, ranks: Mapping[str, int]) -> None:
        """Makes every message sent through `sqs` (a boto3 client) to a lane's queue, `ranks` by queue URL, an
        expectation of the lane's next batch (`expect`): the API's send of a high-priority notification to its
        intake queue holds the lower lanes back from then on, not only once the fan-out has received it."""

        def sending(params: dict[str, Any], **_: Any) -> None:
            self.expect(ranks.get(params.get("QueueUrl", "")))

        for operation in ("SendMessage", "SendMessageBatch"):
            sqs.meta.events.register(f"before-parameter-build.sqs.{operation}", sending)

    @contextmanager
    def arriving(self, rank: int | None) -> Iterator[None]:
        """Work for lane `rank` (a notification posted to the API) is under way in this thread: lower lanes give way
        from now on (`expect`), and while the block runs each AWS call this thread makes through a marked client
        announces the lane to the emulator (EXPECT_HEADER), which holds the lower lanes' requests back for it from
        the first of them, before the lane's own requests begin."""
        self.expect(rank)
        if not self.enabled or rank is None:
            yield
            return
        _lane.expecting = rank
        try:
            yield
        finally:
            _lane.expecting = None

    def marked(self, clients: Callable[..., Any]) -> Callable[..., Any]:
        """A `client(service, ...)` for the functions of no lane: the process's shared client (`clients`), its
        requests marked as they leave (`mark_lanes`), so the API's calls can announce a lane (`arriving`)."""

        def marked_client(*args: Any, **kwargs: Any) -> Any:
            shared = clients(*args, **kwargs)
            mark_lanes(shared)
            return shared

        return marked_client

    def calling_for(self, rank: int | None) -> None:
        """The next AWS call this thread makes, through a client `mark_lanes` was applied to, names lane `rank`
        (while the precedence is on: off, no request names a lane)."""
        if self.enabled and rank is not None:
            _lane.rank = rank

    def announce_publishes(self, sns: Any) -> None:
        """Makes every publish a lane's function makes through `sns` (the topic, whose subscriptions route each
        message to its priority's queue: the lane's own) an expectation of the lane's next batch (`expect`): a
        high-priority fan-out's deliveries hold the lower lanes back until the high deliver lane receives them."""

        def publishing(**_: Any) -> None:
            self.expect(getattr(_lane, "rank", None))

        for operation in ("Publish", "PublishBatch"):
            sns.meta.events.register(f"before-parameter-build.sns.{operation}", publishing)

    def clients_for(self, rank: int, clients: Callable[..., Any]) -> Callable[..., Any]:
        """A `client(service, one_attempt=False)` for one lane's functions: the process's shared client
        (`clients`, herald.adapters.clients.client), each of its calls first giving way to higher lanes."""

        def lane_client(*args: Any, **kwargs: Any) -> Any:
            # The arguments as given: a cached factory keys `client("sqs")` and `client("sqs", one_attempt=False)`
            # apart, and the same client is what a benchmark's hooks were put on
            return GivingWay(clients(*args, **kwargs), lambda: self.give_way(rank), lambda: self.calling_for(rank))

        return lane_client


class GivingWay:
    """A boto3 client whose operations first give way to a more urgent lane; everything else is the client's own.

    The wait is taken when an operation is looked up (`client.put_item` in `client.put_item(...)`), and the
    shared client's own bound method is handed back: the call then goes through the shared client (its
    connection pool, its event hooks) with no frame of this module on the stack, so a benchmark that tells
    whose call it is by the handler frames it finds (bench/calls.py) sees the handler's. A method looked up
    once and called many times gives way once; Herald's adapters look each call up as they make it. Only
    the client's methods give way (`exceptions` and `meta` are not methods), in whichever thread looks them
    up, so a handler's own thread pools are held back too. A paginator's or waiter's calls do not give way
    (no lane function pages through a list while a flood is on). Each call, the most urgent lane's too, names
    its lane in LANE_HEADER while the precedence is on (`mark_lanes`): the emulator serves by it.
    """

    _UNGATED = frozenset({"can_paginate", "get_paginator", "get_waiter", "close", "generate_presigned_url"})

    def __init__(self, client: Any, give_way: Callable[[], float], mark: Callable[[], None] = lambda: None):
        self._client = client
        self._give_way = give_way
        self._mark = mark  # names the lane of the call about to be made (LanePrecedence.calling_for)
        mark_lanes(client)

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not name.startswith("_") and name not in self._UNGATED and inspect.ismethod(attribute):
            self._give_way()
            self._mark()
        return attribute


# The lane of the call a thread is making: set when a lane client's operation is looked up, or by a lane's
# poller (LanePrecedence.calling_for), read as its request leaves. A thread serves one function's container at a
# time, so it holds one lane's work.
_lane = threading.local()


def mark_lanes(client: Any) -> None:
    """Makes each request of `client` (a boto3 client, shared or not) that a lane makes name that lane in
    LANE_HEADER as it leaves (`_mark_lane`). Applying it again to the same client changes nothing."""
    meta = getattr(client, "meta", None)
    service = getattr(getattr(meta, "service_model", None), "service_name", None)
    if meta is not None and service is not None:  # a boto3 client (a test's fake has nothing to mark)
        meta.events.register(f"before-send.{service}", _mark_lane, unique_id=LANE_HEADER)


def _mark_lane(request: Any, **_: Any) -> None:
    """Names a lane's request in LANE_HEADER, so the emulator serves a more urgent lane's first and holds the
    lower lanes' back while one is under way (herald_local.emulator.TurnLock). The shared client is everyone's:
    a call of no lane (the API's, the stack's own) carries no mark."""
    rank = getattr(_lane, "rank", None)
    _lane.rank = None
    if rank is not None:
        request.headers[LANE_HEADER] = str(rank)
        return
    expecting = getattr(_lane, "expecting", None)
    if expecting is not None:  # a call of no lane, made for that lane's work about to begin
        request.headers[EXPECT_HEADER] = str(expecting)
