"""The local stack's emulator front (one DynamoDB request at a time, a gate for snapshots) and its kept state."""

from __future__ import annotations

import io
import json
import os
import pickle
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from herald_local.emulator import FIGURES_PATH, EmulatorApplication, RequestGate, TurnLock, lane_of
from herald_local.provision import StackChanged, _check_unchanged, _parameters_used
from herald_local.state import SNAPSHOT, StateError, StateFolder, pickled


class CountingApp:
    """A WSGI app that counts how many requests it serves at once, per X-Amz-Target prefix."""

    def __init__(self, hold: float = 0.05, body: bytes = b"{}"):
        self.hold = hold
        self.body = body
        self.lock = threading.Lock()
        self.now: dict[str, int] = {}
        self.most: dict[str, int] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        kind = environ.get("HTTP_X_AMZ_TARGET", "").split(".")[0]
        with self.lock:
            for counted in (kind, "all"):
                self.now[counted] = self.now.get(counted, 0) + 1
                self.most[counted] = max(self.most.get(counted, 0), self.now[counted])
        time.sleep(self.hold)
        with self.lock:
            for counted in (kind, "all"):
                self.now[counted] -= 1
        start_response("200 OK", [])
        return [self.body]


def request(target: str, method: str = "POST") -> dict[str, Any]:
    return {"HTTP_X_AMZ_TARGET": target, "REQUEST_METHOD": method}


def serve_at_once(application: EmulatorApplication, environs: list[dict[str, Any]]) -> None:
    threads = [threading.Thread(target=application, args=(environ, lambda *_: None)) for environ in environs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)


def test_dynamodb_requests_pass_one_at_a_time_while_sqs_requests_of_no_lane_overlap() -> None:
    # Given the emulator's front around an app that counts requests in progress
    app = CountingApp()
    application = EmulatorApplication(app)

    # When eight DynamoDB and eight SQS requests arrive at once
    serve_at_once(
        application,
        [request("DynamoDB_20120810.UpdateItem")] * 8 + [request("AmazonSQS.SendMessage")] * 8,
    )

    # Then DynamoDB saw one at a time; SQS several side by side
    assert app.most["DynamoDB_20120810"] == 1
    assert app.most["AmazonSQS"] > 1


def in_lane(environ: dict[str, Any], rank: int) -> dict[str, Any]:
    return {**environ, "HTTP_X_HERALD_LANE": str(rank)}


def test_while_a_high_lanes_work_is_under_way_a_low_lanes_requests_of_any_service_take_turns() -> None:
    # Given the front just after a high lane's request, its next one awaited for seconds
    app = CountingApp()
    application = EmulatorApplication(app)
    assert application.turns is not None
    application.turns.hold = 5.0
    application(in_lane(request("DynamoDB_20120810.UpdateItem"), 0), lambda *_: None)

    # When eight low SQS requests arrive at once
    serve_at_once(application, [in_lane(request("AmazonSQS.SendMessage"), 2)] * 8)

    # Then they passed one at a time, the first in line held back for the high lane's next request (let go at the
    # cap, as none came), and all were served
    assert app.most["AmazonSQS"] == 1
    assert application.turns.held_back >= 1
    assert application.waits.requests == 9


def test_the_most_urgent_lanes_requests_of_any_service_take_turns() -> None:
    # Given the emulator's front, nothing under way
    app = CountingApp()
    application = EmulatorApplication(app)

    # When eight high-lane SQS requests arrive at once
    serve_at_once(application, [in_lane(request("AmazonSQS.SendMessage"), 0)] * 8)

    # Then they passed one at a time, each in its turn (a lower lane's request would have waited behind them)
    assert app.most["AmazonSQS"] == 1
    assert application.waits.requests == 8


@pytest.mark.parametrize(
    ("found", "held_back"),
    [(b'{"Messages": [{"ReceiptHandle": "r"}]}', 1), (b"{}", 0)],
    ids=["a message: its lane's work is under way", "nothing: no work under way"],
)
def test_a_high_lanes_receive_holds_the_lower_lanes_back_only_when_it_found_a_message(
    found: bytes, held_back: int
) -> None:
    # Given the front, a high lane's next request awaited for a second after each of its requests (capped at 0.3 s)
    application = EmulatorApplication(CountingApp(hold=0, body=found))
    assert application.turns is not None
    application.turns.hold, application.turns.cap = 1.0, 0.3

    # When the high lane's poller receives, then a low lane's DynamoDB request comes
    application(in_lane(request("AmazonSQS.ReceiveMessage"), 0), lambda *_: None)
    application(in_lane(request("DynamoDB_20120810.UpdateItem"), 2), lambda *_: None)

    # Then the low request waited for the high lane's next one only if the receive found work for it
    assert application.turns.held_back == held_back


@pytest.mark.parametrize(("announces", "held_back"), [(True, 1), (False, 0)], ids=["announcing", "not announcing"])
def test_a_request_of_no_lane_announcing_the_high_lane_holds_the_lower_lanes_back(
    announces: bool, held_back: int
) -> None:
    # Given the front, a lane's next request awaited for a second after it is announced (capped at 0.3 s)
    application = EmulatorApplication(CountingApp(hold=0))
    assert application.turns is not None
    application.turns.hold, application.turns.cap = 1.0, 0.3

    # When the API's write for a high-priority notification (no lane) comes, then a low lane's request
    api_write = request("DynamoDB_20120810.PutItem")
    application({**api_write, "HTTP_X_HERALD_EXPECT": "0"} if announces else api_write, lambda *_: None)
    application(in_lane(request("DynamoDB_20120810.UpdateItem"), 2), lambda *_: None)

    # Then the low request waited for the high lane's work only if the API's request announced it
    assert application.turns.held_back == held_back


def test_without_the_lock_dynamodb_requests_overlap_as_moto_serves_them() -> None:
    # Given the front with atomic DynamoDB turned off (how the race was shown)
    app = CountingApp()
    application = EmulatorApplication(app, atomic_dynamodb=False)

    # When eight DynamoDB requests arrive at once
    serve_at_once(application, [request("DynamoDB_20120810.UpdateItem")] * 8)

    # Then they overlap
    assert app.most["DynamoDB_20120810"] > 1


@pytest.mark.parametrize(
    ("environ", "body", "changes"),
    [
        (request("DynamoDB_20120810.UpdateItem"), b"{}", 1),
        (request("DynamoDB_20120810.Query"), b"{}", 0),
        (request("DynamoDB_20120810.GetItem"), b"{}", 0),
        (request("AmazonSQS.GetQueueAttributes"), b"{}", 0),
        (request("AmazonSQS.ReceiveMessage"), b"{}", 0),
        (request("AmazonSQS.ReceiveMessage"), b'{"Messages": [{"ReceiptHandle": "r"}]}', 1),
        (request("AmazonSQS.DeleteMessageBatch"), b"{}", 1),
        (request("", "POST"), b"<PublishResponse/>", 1),  # SNS, SES, CloudFormation: their action is in the form
        (request("", "GET"), b"{}", 0),  # /moto-api/data.json
    ],
)
def test_a_snapshot_is_due_only_after_a_request_that_may_have_changed_something(
    environ: dict[str, Any], body: bytes, changes: int
) -> None:
    # Given the front around an app answering `body`
    application = EmulatorApplication(CountingApp(hold=0, body=body))

    # When it serves the request
    answer = application(environ, lambda *_: None)

    # Then the answer is the app's, and it counted a change only for a request that may have made one
    assert answer == [body]
    assert application.changes == changes


def test_a_closed_gate_waits_for_the_request_in_progress_and_holds_new_ones_back() -> None:
    # Given a request in progress
    gate = RequestGate()
    order: list[str] = []
    in_progress, release = threading.Event(), threading.Event()

    def slow_request() -> None:
        with gate.passing():
            in_progress.set()
            release.wait(5)
            order.append("first request done")

    def late_request() -> None:
        with gate.passing():
            order.append("late request")

    first = threading.Thread(target=slow_request)
    first.start()
    in_progress.wait(5)

    # When a snapshot closes the gate, and another request arrives while it is closed
    def snapshot() -> None:
        with gate.closed(timeout=5) as quiet:
            order.append(f"snapshot (quiet: {quiet})")
            late = threading.Thread(target=late_request)
            late.start()
            time.sleep(0.1)
            order.append("snapshot done")
        late.join(5)

    closer = threading.Thread(target=snapshot)
    closer.start()
    time.sleep(0.1)
    release.set()
    for thread in (first, closer):
        thread.join(5)

    # Then the snapshot came after the first request, and the late one only after the snapshot
    assert order == ["first request done", "snapshot (quiet: True)", "snapshot done", "late request"]


def test_a_gate_that_cannot_get_quiet_in_time_says_so_and_opens_again() -> None:
    # Given a request that outlasts the snapshot's patience (a long poll, say)
    gate = RequestGate()
    entered, release = threading.Event(), threading.Event()

    def long_poll() -> None:
        with gate.passing():
            entered.set()
            release.wait(5)

    poll = threading.Thread(target=long_poll)
    poll.start()
    entered.wait(5)

    # When a snapshot tries to close the gate for 0.1 s
    with gate.closed(timeout=0.1) as quiet:
        pass

    # Then it was not quiet, and requests pass again right after
    assert quiet is False
    with gate.passing():
        pass
    release.set()
    poll.join(5)


class Queue:
    """Like moto's SQS queue: state with a Condition and locks beside it."""

    def __init__(self) -> None:
        self.messages = ["one", "two"]
        self.condition = threading.Condition()
        self.lock = threading.Lock()
        self.rlock = threading.RLock()


def test_moto_state_with_locks_pickles_and_comes_back_with_fresh_released_locks() -> None:
    # Given an object holding its data, a Condition and locks, one of them held
    queue = Queue()
    queue.lock.acquire()

    # When it is pickled as the state keeper pickles moto's backends, and loaded again
    loaded = pickle.loads(pickled({"queue": queue}))["queue"]

    # Then its data is back, with new locks, all released
    assert loaded.messages == ["one", "two"]
    assert loaded.lock.acquire(blocking=False)
    assert loaded.rlock.acquire(blocking=False)
    with loaded.condition:
        loaded.condition.notify_all()


def test_a_reference_to_motos_registry_of_backends_stays_the_live_registry() -> None:
    # Given an object that refers to moto's registry of SQS backends, and to one account's
    from moto.backends import get_backend

    registry = get_backend("sqs")
    holder = {"all": registry, "account": registry["123456789012"]}

    # When it is pickled and loaded again, Then it refers to the same live objects, not copies
    loaded = pickle.loads(pickled(holder))
    assert loaded["all"] is registry
    assert loaded["account"] is registry["123456789012"]


def test_a_state_folder_is_held_by_one_stack_at_a_time(tmp_path: Path) -> None:
    # Given a stack holding its state folder
    first = StateFolder(tmp_path / "state")
    first.open()
    try:
        # When another tries to open the same folder
        with pytest.raises(StateError) as refused:
            StateFolder(tmp_path / "state").open()

        # Then it is refused, naming the holder and the way out
        assert str(os.getpid()) in str(refused.value)
        assert "--state-dir" in str(refused.value)
    finally:
        first.close()
    # and once the first let go, it opens
    second = StateFolder(tmp_path / "state")
    second.open()
    second.close()


def test_fresh_discards_the_snapshot_and_the_api_key_is_kept(tmp_path: Path) -> None:
    # Given a folder with a snapshot and an API key
    folder = StateFolder(tmp_path / "state")
    folder.open()
    folder.save(pickle.dumps({}))
    key = folder.api_key()
    folder.close()
    assert (tmp_path / "state" / SNAPSHOT).exists()

    # When it is opened again with fresh
    again = StateFolder(tmp_path / "state")
    again.open(fresh=True)

    # Then the snapshot is gone, nothing is restored, and the key is the same
    assert not (tmp_path / "state" / SNAPSHOT).exists()
    assert again.restore() is None
    assert again.api_key() == key
    again.close()


def test_a_snapshot_from_another_moto_is_refused_with_the_way_out(tmp_path: Path) -> None:
    # Given a snapshot saved by another version of moto
    folder = StateFolder(tmp_path / "state")
    folder.open()
    header = {"format": 1, "moto": "0.0.1", "saved_at": "then"}
    (tmp_path / "state" / SNAPSHOT).write_bytes(json.dumps(header).encode() + b"\n" + pickle.dumps({}))

    # When it is restored, Then it is refused in one line that says --fresh
    with pytest.raises(StateError, match=r"moto 0\.0\.1.*--fresh"):
        folder.restore()
    folder.close()


def test_a_save_replaces_the_snapshot_whole(tmp_path: Path) -> None:
    # Given a folder with a snapshot
    folder = StateFolder(tmp_path / "state")
    folder.open()
    folder.save(b"first")

    # When another is saved
    folder.save(b"second")

    # Then the file holds the second, after its header, and no partial file is left behind
    raw = (tmp_path / "state" / SNAPSHOT).read_bytes()
    assert raw.split(b"\n", 1)[1] == b"second"
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["lock", SNAPSHOT]
    folder.close()


def test_a_snapshot_says_when_its_state_was_read_not_when_it_was_written(tmp_path: Path) -> None:
    # Given a folder with no snapshot yet
    folder = StateFolder(tmp_path / "state")
    folder.open()
    assert folder.taken_at() is None

    # When a state read a while ago is saved now
    read = datetime(2026, 11, 30, 20, 0, 0, 123456, tzinfo=UTC)
    folder.save(pickle.dumps({}), taken_at=read)

    # Then the snapshot says it was taken then, and a restore reports the same moment
    assert folder.taken_at() == read
    restored = folder.restore()
    assert restored is not None and restored.saved_at == read.isoformat()
    folder.close()


class KeptStack:
    """CloudFormation as a restarted stack finds it: a template and parameters from the last run."""

    def __init__(self, template: dict[str, Any], parameters: dict[str, str]):
        self.template = template
        self.parameters = parameters

    def get_template(self, StackName: str) -> dict[str, Any]:
        return {"TemplateBody": json.dumps(self.template)}

    def describe_stacks(self, StackName: str) -> dict[str, Any]:
        parameters = [{"ParameterKey": k, "ParameterValue": v} for k, v in self.parameters.items()]
        return {"Stacks": [{"Parameters": parameters}]}


QUEUE = {"Type": "AWS::SQS::Queue", "Properties": {"VisibilityTimeout": {"Ref": "Visibility"}}}


def test_a_kept_stack_made_from_the_same_template_and_parameters_is_used_as_it_is() -> None:
    part = {"Resources": {"Queue": QUEUE}}
    _check_unchanged(KeptStack(part, {"Visibility": "30", "Other": "1"}), "s", part, {"Visibility": "30", "Other": "2"})


def test_a_kept_stack_from_another_template_or_parameter_is_refused_naming_what_differs() -> None:
    # Given a stack kept from a run whose template had no table, and another visibility
    kept = KeptStack({"Resources": {"Queue": QUEUE}}, {"Visibility": "30"})
    now = {"Resources": {"Queue": QUEUE, "Table": {"Type": "AWS::DynamoDB::Table"}}}

    # When this run finds it, Then it is refused, naming the table and the parameter, and --fresh
    with pytest.raises(StackChanged, match=r"Table, parameter Visibility differ\): start with --fresh"):
        _check_unchanged(kept, "s", now, {"Visibility": "60"})


def test_an_emulator_that_cannot_show_its_template_gets_the_benefit_of_the_doubt() -> None:
    class Silent:
        def get_template(self, StackName: str) -> dict[str, Any]:
            raise ClientError({"Error": {"Code": "ValidationError", "Message": "no"}}, "GetTemplate")

    _check_unchanged(Silent(), "s", {"Resources": {"Queue": QUEUE}}, {})


def test_the_parameters_a_resource_uses_are_its_refs_and_subs() -> None:
    resources = {
        "A": {"Properties": {"X": {"Ref": "One"}, "Y": {"Fn::Sub": "${Two}-${Resource.Arn}"}}},
        "B": {"Properties": {"Z": [{"Fn::Sub": ["${Three}", {}]}]}},
    }
    assert _parameters_used(resources) >= {"One", "Two", "Three"}


class QueueFillingLater:
    """An SQS ReceiveMessage endpoint whose queue gets a message after `after` seconds."""

    def __init__(self, after: float):
        self.ready_at = time.monotonic() + after
        self.waits: list[Any] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        body = json.loads(environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])))
        self.waits.append(body["WaitTimeSeconds"])
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.0")])
        if time.monotonic() >= self.ready_at:
            return [b'{"Messages": [{"MessageId": "m", "ReceiptHandle": "r", "Body": "b"}]}']
        return [b"{}"]


def receive(wait: int) -> dict[str, Any]:
    body = json.dumps({"QueueUrl": "q", "WaitTimeSeconds": wait}).encode()
    return {
        **request("AmazonSQS.ReceiveMessage"),
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
    }


def test_a_long_poll_is_served_as_short_polls_so_a_snapshot_never_waits_for_it() -> None:
    # Given a queue that gets a message in 0.5 s, and a long poll of up to 5 s on it
    app = QueueFillingLater(after=0.5)
    application = EmulatorApplication(app)
    answers: list[list[bytes]] = []
    statuses: list[str] = []
    poll = threading.Thread(
        target=lambda: answers.append(application(receive(5), lambda status, *_: statuses.append(status)))
    )
    started = time.monotonic()
    poll.start()
    time.sleep(0.15)

    # When a snapshot closes the gate while the long poll waits
    with application.gate.closed(timeout=0.05) as quiet:
        pass
    poll.join(10)

    # Then the gate got quiet at once, and the poll still returned the message as soon as it came,
    # having asked the emulator only for short polls
    assert quiet is True
    assert b'"ReceiptHandle"' in answers[0][0]
    assert statuses == ["200 OK"]
    # (well before the 5 s the long poll asked for: the bound is the poll's own wait, not a machine's speed)
    assert 0.5 <= time.monotonic() - started < 5
    assert set(app.waits) == {0} and len(app.waits) > 1
    assert application.changes == 1  # only the receive that got the message


def test_a_long_poll_on_an_empty_queue_ends_when_its_wait_is_over() -> None:
    app = QueueFillingLater(after=60)
    started = time.monotonic()
    application = EmulatorApplication(app)
    answer = application(receive(1), lambda *_: None)
    assert answer == [b"{}"]
    # (not before its 1 s, and not held much past it: 4 s to spare, for a loaded machine)
    assert 1 <= time.monotonic() - started < 5
    assert set(app.waits) == {0}
    assert application.changes == 0


def served_as_they_come(
    lock: TurnLock, requests: list[tuple[str, int | None]], apart: float, then: Callable[[], object] = lambda: None
) -> list[str]:
    """Each of `requests` (name, lane) asks for the lock `apart` seconds after the one before, in a thread of its
    own, and `then` runs after the last: the order they were served in, once all were."""
    served: list[str] = []
    waiters = []
    for name, rank in requests:

        def take(name: str = name, rank: int | None = rank) -> None:
            with lock.turn(rank):
                served.append(name)

        waiter = threading.Thread(target=take)
        waiter.start()
        waiters.append(waiter)
        time.sleep(apart)
    then()
    for waiter in waiters:
        waiter.join(10)
    return served


def served_after_the_holder(lock: TurnLock, requests: list[tuple[str, int | None]]) -> list[str]:
    """Holds the lock while each of `requests` queues for it 0.05 s after the one before (each is waiting before
    the next comes), then lets go: the order they were served in."""
    lock.__enter__()
    return served_as_they_come(lock, requests, apart=0.05, then=lock.release)


def test_the_dynamodb_lock_goes_to_its_waiters_in_the_order_they_came() -> None:
    # Given the lock held, and five requests of no lane queueing for it one after another
    lock = TurnLock()

    # When the holder lets go, Then they get it one at a time, first come first served
    served = served_after_the_holder(lock, [(str(n), None) for n in range(5)])
    assert served == ["0", "1", "2", "3", "4"]
    # and it is free again
    lock.__enter__()
    lock.__exit__()


def test_a_more_urgent_lanes_request_takes_the_next_turn_ahead_of_lower_lanes_queued_before_it() -> None:
    # Given the lock held, and a low, a normal, another low, then a high-lane request queueing one after another
    lock = TurnLock()

    # When the holder lets go
    served = served_after_the_holder(lock, [("low-1", 2), ("normal", 1), ("low-2", 2), ("high", 0)])

    # Then the high request goes first, then the normal one, then the lows in the order they came
    assert served == ["high", "normal", "low-1", "low-2"]


def test_a_request_names_its_lane_by_header_and_one_naming_none_or_nonsense_is_of_no_lane() -> None:
    assert lane_of({"HTTP_X_HERALD_LANE": "2"}) == 2
    assert lane_of({"HTTP_X_HERALD_LANE": "1"}) == 1
    assert lane_of({"HTTP_X_HERALD_LANE": "0"}) == 0
    assert lane_of({}) is None
    assert lane_of({"HTTP_X_HERALD_LANE": "fast"}) is None
    assert lane_of({"HTTP_X_HERALD_LANE": "9"}) == 2


def served_in_order(lock: TurnLock, first: int | None, then: list[tuple[str, int | None]]) -> list[str]:
    """Serves a request of lane `first`, then, while nothing holds the lock, each of `then` arriving 0.1 s apart;
    the order they were served in."""
    with lock.turn(first):
        pass
    return served_as_they_come(lock, then, apart=0.1)


def test_after_a_high_lane_request_a_low_one_waits_for_the_high_lanes_next() -> None:
    # Given the lock, free, just after a high-lane request (its lane's next one waited for a second)
    lock = TurnLock(hold=1.0, cap=5.0)

    # When a low request comes, then a high one 0.1 s later
    served = served_in_order(lock, 0, [("low", 2), ("high", 0)])

    # Then the high one is served first: the low one was held back for it
    assert served == ["high", "low"]
    assert lock.held_back == 1


def test_after_a_request_of_no_lane_nothing_is_held_back() -> None:
    # Given the lock, free, just after a request of no lane (the API's, say)
    lock = TurnLock(hold=1.0, cap=5.0)

    # When a low request comes, then a high one 0.1 s later
    served = served_in_order(lock, None, [("low", 2), ("high", 0)])

    # Then the low one was served as it came
    assert served == ["low", "high"]
    assert lock.held_back == 0


def test_a_held_back_request_is_served_at_the_cap_however_long_the_hold() -> None:
    # Given the lock just after a high-lane request, its next one waited for a minute, but a cap of 0.2 s
    lock = TurnLock(hold=60.0, cap=0.2)

    # When a low request comes and no high one follows
    served = served_in_order(lock, 0, [("low", 2)])

    # Then it is served all the same (the join would have given up long before the minute)
    assert served == ["low"]


def test_the_lanes_quiet_time_counts_from_its_last_request_and_its_hold() -> None:
    # Given the lock on a clock the test moves, a hold of 0.5 s
    now = [10.0]
    lock = TurnLock(hold=0.5, cap=1.0, clock=lambda: now[0])

    # When a high-lane request is served, Then the lane is not quiet during its hold
    with lock.turn(0):
        pass
    assert lock.quiet_for(0) == 0

    # and is quiet from the end of the hold on; a request of no lane changes nothing
    now[0] += 3
    with lock.turn(None):
        pass
    assert lock.quiet_for(0) == pytest.approx(2.5)


def test_the_fronts_own_route_answers_its_counters_without_reaching_moto() -> None:
    # Given the front, having served one DynamoDB write
    app = CountingApp(hold=0)
    application = EmulatorApplication(app)
    application(request("DynamoDB_20120810.UpdateItem"), lambda *_: None)
    statuses: list[str] = []

    # When its figures are asked for
    [body] = application(
        {"PATH_INFO": FIGURES_PATH, "REQUEST_METHOD": "GET"}, lambda status, *_: statuses.append(status)
    )

    # Then it answers them itself: one change, one DynamoDB request that took its turn, and moto saw one request
    figures = json.loads(body)
    assert statuses == ["200 OK"]
    assert (figures["atomic_dynamodb"], figures["changes"], figures["lock_waits"]["requests"]) == (True, 1, 1)
    assert app.most == {"DynamoDB_20120810": 1, "all": 1}
    assert figures["held_back"] == 0


def test_a_folder_whose_stack_is_gone_is_taken_once_its_emulator_process_lets_go(tmp_path: Path) -> None:
    # Given a folder whose lock names a stack that is gone (killed), while another process still holds
    # the lock (its emulator, saving its last snapshot) for a second
    folder = tmp_path / "state"
    folder.mkdir()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (folder / "lock").write_text(str(gone.pid))
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, sys, time\n"
            f"lock = open({str(folder / 'lock')!r}, 'a+')\n"
            "fcntl.flock(lock, fcntl.LOCK_EX)\n"
            "print('held', flush=True)\n"
            "time.sleep(1)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"

    # When a stack opens the folder
    started = time.monotonic()
    state = StateFolder(folder)
    state.open()

    # Then it waited for the holder to let go, and has the folder now
    assert holder.wait(5) == 0
    assert time.monotonic() - started >= 0.5
    assert (folder / "lock").read_text() == str(os.getpid())
    state.close()
