"""The local stack's lane precedence: a lower lane's work gives way while a higher lane has a batch in flight,
for a capped time; equal lanes never wait on each other. Threads and fakes only; no timing is asserted."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from types import ModuleType
from typing import Any

import pytest

from herald_local.emulator import EXPECT_HEADER, LANE_HEADER
from herald_local.event_source import QueuePoller
from herald_local.functions import take_clients_from
from herald_local.precedence import LanePrecedence, function_ranks, lane_rank
from herald_local.template import EventSourceSpec, HeraldTemplate

HIGH, NORMAL, LOW = 0, 1, 2
LONG = 60.0  # a cap no test reaches unless it fails: a wait ends because the higher lane's batch ended


def eventually(done: Any, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.01)


def give_way_in_thread(precedence: LanePrecedence, rank: int) -> tuple[threading.Event, list[float]]:
    """Starts `give_way(rank)` in a thread; the event is set when it returns, the list gets what it waited."""
    done, waited = threading.Event(), []

    def run() -> None:
        waited.append(precedence.give_way(rank))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, waited


def test_each_queue_of_a_lane_has_its_lane_rank_and_other_queues_none() -> None:
    assert [lane_rank(q) for q in ("HighIntakeQueue", "HighQueue", "NormalIntakeQueue", "LowQueue")] == [0, 0, 1, 2]
    assert lane_rank("FeedbackQueue") is None and lane_rank("ScheduleQueue") is None


def test_the_template_ranks_each_lane_function_by_the_queue_it_consumes() -> None:
    # Given the template's event source mappings
    template = HeraldTemplate.load()

    # When each function's rank is taken from the queues it consumes
    ranks = function_ranks((source.function, source.queue) for source in template.event_sources)

    # Then the fan-out and deliver functions of each priority have its rank, and no other function has one
    assert ranks == {
        "FanoutHighFunction": HIGH,
        "DeliverHighFunction": HIGH,
        "FanoutNormalFunction": NORMAL,
        "DeliverNormalFunction": NORMAL,
        "FanoutLowFunction": LOW,
        "DeliverLowFunction": LOW,
    }


def test_a_low_batch_waits_while_a_high_batch_is_in_flight_and_goes_on_when_it_ends() -> None:
    # Given a high batch in flight
    precedence = LanePrecedence(wait_cap=LONG)
    precedence.begin(HIGH)

    # When low work gives way
    done, waited = give_way_in_thread(precedence, LOW)

    # Then it waits until the high batch ends, then goes on
    assert not done.wait(0.2)
    precedence.end(HIGH)
    assert done.wait(10)
    assert waited[0] > 0
    yields = precedence.yields(LOW)
    assert (yields.count, yields.capped) == (1, 0)


def test_normal_waits_for_high_and_low_for_normal() -> None:
    precedence = LanePrecedence(wait_cap=LONG)

    # Given a normal batch in flight: low waits, high does not
    precedence.begin(NORMAL)
    low_done, _ = give_way_in_thread(precedence, LOW)
    assert precedence.give_way(HIGH) == 0.0
    assert not low_done.wait(0.2)
    precedence.end(NORMAL)
    assert low_done.wait(10)

    # Given a high batch in flight: normal waits
    precedence.begin(HIGH)
    normal_done, _ = give_way_in_thread(precedence, NORMAL)
    assert not normal_done.wait(0.2)
    precedence.end(HIGH)
    assert normal_done.wait(10)


def test_the_cap_ends_a_wait_while_the_higher_lane_is_still_busy() -> None:
    # Given a high lane that never finishes its batch, and a short cap
    precedence = LanePrecedence(wait_cap=0.05)
    precedence.begin(HIGH)

    # When low work gives way
    done, waited = give_way_in_thread(precedence, LOW)

    # Then it goes on anyway once the cap has passed, and the wait counts as capped
    assert done.wait(10)
    assert waited[0] >= 0.05
    assert precedence.yields(LOW).capped == 1


def test_equal_and_lower_lanes_never_hold_a_lane_up() -> None:
    # Given batches of every lane in flight but the high one
    precedence = LanePrecedence(wait_cap=LONG)
    precedence.begin(LOW)
    precedence.begin(LOW)
    precedence.begin(NORMAL)

    # When each lane gives way
    # Then no lane waits on its own kind or on a lower lane
    assert precedence.give_way(HIGH) == 0.0
    precedence.end(NORMAL)
    assert precedence.give_way(NORMAL) == 0.0
    assert precedence.give_way(LOW) == 0.0
    assert [precedence.yields(rank).count for rank in (HIGH, NORMAL, LOW)] == [0, 0, 0]


def test_switched_off_nothing_waits_and_work_of_no_lane_never_waits() -> None:
    off = LanePrecedence(enabled=False, wait_cap=LONG)
    off.begin(HIGH)
    assert off.give_way(LOW) == 0.0

    on = LanePrecedence(wait_cap=LONG)
    on.begin(HIGH)
    assert on.give_way(None) == 0.0  # the feedback and schedule queues' work
    on.begin(None)  # and it holds nobody up
    assert on.in_flight == (1, 0, 0)


def test_a_message_sent_to_a_higher_lane_holds_a_lower_lane_until_its_batch_has_ended() -> None:
    # Given a clock that stands still (no expectation lapses) and a high message just sent
    precedence = LanePrecedence(wait_cap=LONG, clock=lambda: 100.0)
    precedence.expect(HIGH)

    # When low work gives way
    done, _ = give_way_in_thread(precedence, LOW)

    # Then it waits while the message is expected, then while its batch is in flight, and goes on after
    assert not done.wait(0.3)
    precedence.begin(HIGH)
    assert not done.wait(0.3)
    precedence.end(HIGH)
    assert done.wait(10)


def test_an_expected_batch_that_never_comes_holds_a_lower_lane_only_briefly() -> None:
    # Given a high message sent, whose batch nobody receives
    precedence = LanePrecedence(wait_cap=LONG)
    precedence.expect(HIGH)

    # When low work gives way
    done, waited = give_way_in_thread(precedence, LOW)

    # Then it goes on once the expectation lapses, long before the cap
    assert done.wait(10)
    assert 0 < waited[0] < LONG and precedence.yields(LOW).capped == 0


def test_sends_to_a_lanes_queue_through_a_client_announce_its_next_batch() -> None:
    import boto3
    from botocore.stub import Stubber

    # Given an SQS client whose sends are announced, the high lane's queue known by its URL
    precedence = LanePrecedence(wait_cap=LONG, clock=lambda: 100.0)
    sqs = boto3.client("sqs", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    precedence.announce_sends(sqs, {"http://q/high": HIGH, "http://q/low": LOW})
    stub = Stubber(sqs)
    answer = {"MessageId": "m", "MD5OfMessageBody": "x"}
    for _ in range(2):
        stub.add_response("send_message", answer)

    with stub:
        # When a message is sent to the low lane's queue, then low work gives way: it does not wait
        sqs.send_message(QueueUrl="http://q/low", MessageBody="b")
        assert precedence.give_way(LOW) == 0.0 and precedence.give_way(NORMAL) == 0.0

        # When a message is sent to the high lane's queue
        sqs.send_message(QueueUrl="http://q/high", MessageBody="b")

    # Then normal and low work wait for the high lane's batch
    done, _ = give_way_in_thread(precedence, NORMAL)
    assert not done.wait(0.3)
    precedence.begin(HIGH)
    precedence.end(HIGH)
    assert done.wait(10)


class FakeClient:
    """A boto3 client stand-in: records each call and what the precedence showed in flight when it was made."""

    class exceptions:  # as boto3 names it
        class ConditionalCheckFailedException(Exception):
            pass

    meta = "the client's meta"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def put_item(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request["TableName"])
        return {}


def test_a_lane_client_gives_way_before_each_call_from_any_thread() -> None:
    # Given a low lane's client while a high batch is in flight
    precedence = LanePrecedence(wait_cap=LONG)
    shared = FakeClient()
    lane_client = precedence.clients_for(LOW, lambda service, one_attempt=False: shared)("dynamodb")
    precedence.begin(HIGH)

    # When a handler's own thread pool makes calls through it
    with ThreadPoolExecutor(max_workers=2) as pool:
        calls = [pool.submit(lambda n=n: lane_client.put_item(TableName=f"t{n}")) for n in range(2)]
        # Then no call reaches the shared client while the high batch is in flight
        time.sleep(0.2)
        assert shared.calls == [] and not any(call.done() for call in calls)
        precedence.end(HIGH)
        [call.result(timeout=10) for call in calls]
    assert sorted(shared.calls) == ["t0", "t1"] and precedence.yields(LOW).count == 2
    # And the call is the shared client's own method; what is not an operation passes through untouched
    assert lane_client.put_item == shared.put_item
    assert lane_client.meta == "the client's meta"
    failed = lane_client.exceptions.ConditionalCheckFailedException
    assert failed is FakeClient.exceptions.ConditionalCheckFailedException


class Left(Exception):
    pass


def leaving_requests(service: str, header: str = LANE_HEADER) -> tuple[Any, list[str | None]]:
    """A boto3 client of `service` whose requests are caught as they leave: the lane header (or `header`) each
    carried."""
    import boto3

    shared = boto3.client(
        service,
        region_name="us-east-1",
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="a",
        aws_secret_access_key="b",
    )
    sent: list[str | None] = []

    def leaving(request: Any, **_: Any) -> Any:
        sent.append(request.headers.get(header))
        raise Left  # nothing listens at the endpoint: the request is stopped as it leaves

    shared.meta.events.register_last(f"before-send.{service}", leaving)
    return shared, sent


@pytest.mark.parametrize("service, call", [("dynamodb", "describe_limits"), ("sqs", "list_queues")])
def test_each_lanes_request_names_its_lane_and_one_of_no_lane_names_none(service: str, call: str) -> None:
    # Given one client shared by the high and low lanes' clients and by work of no lane
    shared, sent = leaving_requests(service)
    precedence = LanePrecedence()
    low = precedence.clients_for(LOW, lambda *_a, **_k: shared)(service)
    high = precedence.clients_for(HIGH, lambda *_a, **_k: shared)(service)

    # When each makes a call
    for caller in (low, high, shared, low):
        with pytest.raises(Left):
            getattr(caller, call)()

    # Then each lane's requests carry its rank, which the emulator serves by; the shared client's own carry none
    assert sent == [str(LOW), str(HIGH), None, str(LOW)]


def test_switched_off_no_lane_names_its_requests() -> None:
    # Given the low lane's client over a shared client, the precedence switched off
    shared, sent = leaving_requests("dynamodb")
    precedence = LanePrecedence(enabled=False)
    low = precedence.clients_for(LOW, lambda *_a, **_k: shared)("dynamodb")

    # When it makes a call
    with pytest.raises(Left):
        low.describe_limits()

    # Then its request names no lane: the emulator serves it as it comes
    assert sent == [None]


def test_the_apis_calls_for_a_high_notification_announce_its_lane_while_it_is_handled() -> None:
    # Given the shared client as a function of no lane gets it (the API's), and a low lane's client over it
    shared, announced = leaving_requests("dynamodb", EXPECT_HEADER)
    precedence = LanePrecedence()
    api = precedence.marked(lambda *_a, **_k: shared)("dynamodb")
    low = precedence.clients_for(LOW, lambda *_a, **_k: shared)("dynamodb")

    # When the API handles a high-priority notification (one call), then a low lane calls, then the API calls again
    with precedence.arriving(HIGH):
        with pytest.raises(Left):
            api.describe_limits()
        assert precedence.quiet_for(HIGH) == 0  # the lower lanes give way from its arrival on
    for caller in (low, api):
        with pytest.raises(Left):
            caller.describe_limits()

    # Then only the call made while the notification was handled announced the high lane to the emulator
    assert announced == [str(HIGH), None, None]


def test_switched_off_or_for_no_lane_the_apis_calls_announce_nothing() -> None:
    # Given the API's client, the precedence on and off
    shared, announced = leaving_requests("dynamodb", EXPECT_HEADER)
    on, off = LanePrecedence(), LanePrecedence(enabled=False)

    # When it handles a notification of no lane with the precedence on, and a high one with it off
    for precedence, rank in ((on, None), (off, HIGH)):
        with precedence.arriving(rank), pytest.raises(Left):
            precedence.marked(lambda *_a, **_k: shared)("dynamodb").describe_limits()

    # Then no call announced a lane
    assert announced == [None, None]


def test_a_pollers_receives_name_its_lane() -> None:
    # Given a low lane's poller over an SQS client whose requests are caught as they leave
    sqs, sent = leaving_requests("sqs")
    precedence = LanePrecedence()
    spec = EventSourceSpec("LowQueueSource", "DeliverLowFunction", "LowQueue", 50, 0, True, None)
    function: Any = ObservingFunction(precedence)
    poller = QueuePoller(sqs, spec, "http://127.0.0.1:9/q", "arn:q", function, 1, precedence=precedence, rank=LOW)

    # When it receives
    with pytest.raises(Left):
        poller._receive(10)

    # Then the request names the low lane
    assert sent == [str(LOW)]


def test_a_lane_is_quiet_for_as_long_as_it_has_had_nothing_in_flight_or_expected() -> None:
    # Given a precedence on a clock the test moves
    now = [100.0]
    precedence = LanePrecedence(clock=lambda: now[0])

    # When a high batch is in flight, Then the lane is not quiet
    precedence.begin(HIGH)
    now[0] += 5
    assert precedence.quiet_for(HIGH) == 0

    # When it ends, Then the lane is quiet from then on
    precedence.end(HIGH)
    now[0] += 2
    assert precedence.quiet_for(HIGH) == 2

    # When a message is sent to its queue, Then it is not quiet until the expectation lapses
    precedence.expect(HIGH)
    assert precedence.quiet_for(HIGH) == 0
    now[0] += 10
    assert precedence.quiet_for(HIGH) == pytest.approx(10 - 0.25)


def test_a_lane_client_calls_the_very_client_the_process_shares() -> None:
    from herald.adapters.clients import client, provider_client

    # Given the lane clients of the low lane over the process's shared clients
    lane_client = LanePrecedence().clients_for(LOW, client)
    module = ModuleType("handler")
    vars(module).update(client=client, provider_client=provider_client)
    take_clients_from(module, lane_client)

    # When a handler module asks for its clients, as deliver's does
    # Then their operations are the shared clients' own (what a benchmark's hooks are on), one attempt for providers
    assert module.client("dynamodb").put_item == client("dynamodb").put_item  # type: ignore[attr-defined]
    assert module.provider_client("sns").publish == provider_client("sns").publish  # type: ignore[attr-defined]
    assert module.provider_client("sns").publish != client("sns").publish  # type: ignore[attr-defined]


def test_a_container_module_builds_its_dependencies_with_the_clients_it_is_given() -> None:
    # Given a handler module that imported client and provider_client
    module = ModuleType("handler")
    module.client = lambda service, one_attempt=False: ("shared", service, one_attempt)  # type: ignore[attr-defined]
    module.provider_client = lambda service: ("shared", service, True)  # type: ignore[attr-defined]
    given = []

    def lane_clients(service: str, one_attempt: bool = False) -> Any:
        given.append((service, one_attempt))
        return ("lane", service, one_attempt)

    # When the container takes its clients from the lane
    take_clients_from(module, lane_clients)

    # Then both names give the lane's clients, one attempt for the provider's
    assert module.client("dynamodb") == ("lane", "dynamodb", False)  # type: ignore[attr-defined]
    assert module.provider_client("ses") == ("lane", "ses", True)  # type: ignore[attr-defined]
    assert given == [("dynamodb", False), ("ses", True)]


class OneBatchQueue:
    """An SQS client whose queue holds one batch, then nothing."""

    def __init__(self) -> None:
        self.batches = [[{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}"}]]
        self.deleted: list[str] = []
        self.receives = 0

    def receive_message(self, **request: Any) -> dict[str, Any]:
        self.receives += 1
        return {"Messages": self.batches.pop()} if self.batches else {}

    def delete_message_batch(self, **request: Any) -> dict[str, Any]:
        self.deleted += [entry["ReceiptHandle"] for entry in request["Entries"]]
        return {"Successful": [], "Failed": []}


class ObservingFunction:
    """A lane's function that notes the batches in flight per rank while it runs, and can be held."""

    name = "F"

    def __init__(self, precedence: LanePrecedence) -> None:
        self.precedence = precedence
        self.seen: list[tuple[int, ...]] = []
        self.invoked = threading.Event()
        self.release = threading.Event()
        self.release.set()

    def invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        self.seen.append(self.precedence.in_flight)
        self.invoked.set()
        self.release.wait(10)
        return {"batchItemFailures": []}


def poller(precedence: LanePrecedence, queue: str, function: ObservingFunction, sqs: OneBatchQueue) -> QueuePoller:
    spec = EventSourceSpec(f"{queue}Mapping", "F", queue, 10, 0, True, None)
    return QueuePoller(
        sqs,
        spec,
        "url",
        "arn:aws:sqs:us-east-1:1:q",
        function,  # type: ignore[arg-type]
        1,
        precedence=precedence,
        rank=lane_rank(queue),
    )


@pytest.fixture
def stopping() -> Any:
    started: list[QueuePoller] = []
    yield started.append
    for each in started:
        each.stop()


def test_a_high_pollers_batch_is_in_flight_until_its_messages_are_deleted(stopping: Any) -> None:
    # Given a high queue's poller whose function is held mid-invocation
    precedence = LanePrecedence(wait_cap=LONG)
    function, sqs = ObservingFunction(precedence), OneBatchQueue()
    function.release.clear()
    high = poller(precedence, "HighQueue", function, sqs)
    stopping(high)

    # When it receives a batch
    high.start()
    assert function.invoked.wait(10)

    # Then the high lane counts one batch in flight while the function runs, and none once it is deleted
    assert function.seen == [(1, 0, 0)]
    function.release.set()
    eventually(lambda: precedence.in_flight == (0, 0, 0))
    assert sqs.deleted == ["r1"]


def test_a_low_pollers_batch_starts_only_once_the_high_batch_has_ended(stopping: Any) -> None:
    # Given a high batch in flight
    precedence = LanePrecedence(wait_cap=LONG)
    precedence.begin(HIGH)
    function = ObservingFunction(precedence)
    low = poller(precedence, "LowQueue", function, OneBatchQueue())
    stopping(low)

    # When the low queue's poller receives a batch
    low.start()

    # Then its function is not invoked until the high batch ends
    assert not function.invoked.wait(0.3)
    precedence.end(HIGH)
    assert function.invoked.wait(10)
    assert function.seen == [(0, 0, 1)]
    assert precedence.yields(LOW).count == 1


def test_a_low_poller_receives_nothing_while_a_high_batch_is_in_flight(stopping: Any) -> None:
    # Given a high batch in flight
    precedence = LanePrecedence(wait_cap=LONG)
    precedence.begin(HIGH)
    sqs = OneBatchQueue()
    low = poller(precedence, "LowQueue", ObservingFunction(precedence), sqs)
    stopping(low)

    # When the low queue's poller starts
    low.start()

    # Then it does not ask its queue until the high batch has ended
    time.sleep(0.3)
    assert sqs.receives == 0
    precedence.end(HIGH)
    eventually(lambda: sqs.receives > 0)


def test_a_batch_invoked_by_hand_leaves_the_lanes_counts_as_they_were() -> None:
    # Given a high queue's poller, not started: a benchmark drives its mapping one batch at a time (bench/lockstep.py)
    precedence = LanePrecedence(wait_cap=LONG)
    function = ObservingFunction(precedence)
    high = poller(precedence, "HighQueue", function, OneBatchQueue())

    # When a batch is invoked the way that benchmark does it
    high._slots.acquire()
    high._invoke([{"MessageId": "m1", "ReceiptHandle": "r1", "Body": "{}", "Attributes": {}}])

    # Then no lane counts a batch in flight afterwards, so nothing lower is held back by it
    assert precedence.in_flight == (0, 0, 0)
    assert precedence.give_way(LOW) == 0.0
