"""The local stack's emulator, in either placement: on the loopback only, DynamoDB atomic, its state kept;
in a process of its own, deaf to Ctrl-C, gone on stop, and a taken port one line."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests
from botocore.config import Config

from herald_local.emulator import (
    LONG_POLL_RECHECK,
    Emulator,
    EmulatorSettings,
    Placement,
    PortInUse,
    ProcessEmulator,
    emulator_figures,
    start_emulator,
)
from herald_local.endpoints import SERVICES
from herald_local.state import StateFolder
from tests.e2e.test_atomic_writes import race

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]
CALLERS = 10
ROUNDS = 30


def test_the_emulator_process_serves_on_the_loopback_outlives_ctrl_c_and_ends_on_stop() -> None:
    # Given moto started in a process of its own
    emulator = ProcessEmulator(EmulatorSettings())
    try:
        # Then it answers on 127.0.0.1
        assert emulator.endpoint.startswith("http://127.0.0.1:")
        assert requests.get(f"{emulator.endpoint}/moto-api/data.json", timeout=10).ok

        # When the terminal's Ctrl-C reaches it (the whole process group gets it)
        os.kill(emulator.pid, signal.SIGINT)

        # Then it still serves: the stack stops first, then closes its pipe
        assert requests.get(f"{emulator.endpoint}/moto-api/data.json", timeout=10).ok
    finally:
        # When the stack stops it
        emulator.stop()

    # Then the process has ended and nothing answers any more
    with pytest.raises(ProcessLookupError):
        os.kill(emulator.pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emulator.endpoint}/moto-api/data.json", timeout=5)


def test_a_taken_port_is_reported_by_the_emulator_process_as_the_port_and_its_option() -> None:
    # Given a port something else listens on
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # When the emulator process is told to serve there
        emulator = ProcessEmulator(EmulatorSettings(port=port))

        # Then starting it raises PortInUse naming the port and the option that sets it, and the process is gone
        with pytest.raises(PortInUse) as refused:
            emulator.endpoint  # noqa: B018  (reading it waits for the process to start)
    assert (refused.value.port, refused.value.option) == (port, "--aws-port")
    assert not emulator.running()


@pytest.fixture(params=list(Placement))
def emulator(request: pytest.FixtureRequest) -> Iterator[Emulator]:
    started = start_emulator(request.param, EmulatorSettings())
    try:
        yield started
    finally:
        started.stop()


def dynamodb_at(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "dynamodb",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"max_attempts": 1}),
    )


def test_in_either_placement_concurrent_conditional_updates_have_one_winner(emulator: Emulator) -> None:
    # Given the emulator (in a process of its own, or in a thread of this one), a table on it, and ten
    # callers with a connection each
    callers = [dynamodb_at(emulator.endpoint) for _ in range(CALLERS)]
    table = f"race-{uuid.uuid4().hex[:8]}"
    callers[0].create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # When in each of 30 rounds the ten race one attribute_not_exists UpdateItem on a fresh key (the
    # interpreter of this process switching threads as often as it can)
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        winners = [race(callers, table, uuid.uuid4().hex) for _ in range(ROUNDS)]
    finally:
        sys.setswitchinterval(before)

    # Then every round had exactly one winner, and the emulator counted the DynamoDB requests that took turns
    assert [(round_, won) for round_, won in enumerate(winners) if won != 1] == []
    figures = emulator_figures(emulator.endpoint)
    assert figures["atomic_dynamodb"] is True
    assert figures["lock_waits"]["requests"] >= ROUNDS * CALLERS


def test_in_either_placement_a_connection_stays_open_for_the_next_request(emulator: Emulator) -> None:
    # Given one HTTP connection to the emulator
    host, port = emulator.endpoint.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        # When it sends three requests one after another, each with a body (an SQS ListQueues)
        answers = []
        sockets = set()
        for _ in range(3):
            connection.request(
                "POST",
                "/",
                body=b"{}",
                headers={
                    "X-Amz-Target": "AmazonSQS.ListQueues",
                    "Content-Type": "application/x-amz-json-1.0",
                    "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/sqs/aws4_request",
                },
            )
            answer = connection.getresponse()
            answers.append((answer.status, answer.getheader("Connection"), int(answer.getheader("Content-Length"))))
            answer.read()
            sockets.add(id(connection.sock))

        # Then each was answered on the same connection, its length given, none asking to close
        assert [(status, close) for status, close, _ in answers] == [(200, None)] * 3
        assert all(length > 0 for _, _, length in answers)
        assert len(sockets) == 1
    finally:
        connection.close()


def test_in_either_placement_a_long_poll_waits_for_its_queue_not_on_a_timer(emulator: Emulator) -> None:
    # Given an empty queue on the emulator
    sqs = sqs_at(emulator.endpoint)
    queue = sqs.create_queue(QueueName=f"poll-{uuid.uuid4().hex[:8]}")["QueueUrl"]
    polls_before = emulator_figures(emulator.endpoint)["short_polls"]

    # When a long poll of 3 s finds nothing
    assert "Messages" not in sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=3)

    # Then moto was asked about once a second (an empty queue's recheck), not every 0.1 s
    idle_polls = emulator_figures(emulator.endpoint)["short_polls"] - polls_before
    assert 1 <= idle_polls <= 3 / LONG_POLL_RECHECK + 1, idle_polls

    # When a message is sent while a 10 s long poll waits on the empty queue (sent once the emulator shows the poll
    # parked, not after a fixed delay: on a loaded machine the poll's first check may come after a timed send)
    before = emulator_figures(emulator.endpoint)
    received: dict[str, Any] = {}
    poll = threading.Thread(target=lambda: received.update(sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=10)))
    poll.start()
    try:
        assert parked_within(emulator.endpoint, seconds=5), "the long poll never waited on the empty queue"
        sqs_at(emulator.endpoint).send_message(QueueUrl=queue, MessageBody="m")
    finally:
        poll.join()

    # Then the poll returns it, woken by the message's arrival, not by the empty queue's recheck: one wait ended
    # by the message, and no poll left waiting
    after = emulator_figures(emulator.endpoint)
    assert [m["Body"] for m in received["Messages"]] == ["m"]
    assert after["message_wakes"] - before["message_wakes"] == 1
    assert after["parked_polls"] == 0
    assert 1 <= after["short_polls"] - before["short_polls"] <= 2 + 10 / LONG_POLL_RECHECK


def parked_within(endpoint: str, seconds: float) -> bool:
    """Whether a long poll is found waiting on an empty queue within `seconds` (asked every 0.02 s)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if emulator_figures(endpoint)["parked_polls"] > 0:
            return True
        time.sleep(0.02)
    return False


@pytest.mark.parametrize("placement", list(Placement))
def test_in_either_placement_the_state_is_saved_where_moto_runs_and_restored_before_it_answers(
    tmp_path: Path, placement: Placement
) -> None:
    # Given an emulator keeping its state in a folder the caller holds, with a queue and a message on it
    folder = StateFolder(tmp_path / "state")
    folder.open()
    settings = EmulatorSettings(state_dir=folder.folder, snapshot_seconds=0.2)
    try:
        first = start_emulator(placement, settings, (folder.lock_fd,))
        assert first.restored is None
        sqs = sqs_at(first.endpoint)
        queue = sqs.create_queue(QueueName=f"kept-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="still here")

        # When it is stopped, and another started on the same folder (in a new process, moto starts empty)
        first.stop()
        if placement is Placement.THREAD:
            forget_in_process_moto()
        second = start_emulator(placement, settings, (folder.lock_fd,))
        try:
            # Then it says what it restored, and the message is there
            assert second.restored is not None and second.restored.size > 0
            again = sqs_at(second.endpoint)
            url = again.get_queue_url(QueueName=queue.rsplit("/", 1)[-1])["QueueUrl"]
            [message] = again.receive_message(QueueUrl=url, WaitTimeSeconds=1)["Messages"]
            assert message["Body"] == "still here"
        finally:
            second.stop()
    finally:
        folder.close()


def forget_in_process_moto() -> None:
    """Empties moto's backends in this process, as a restarted stack's process starts."""
    from moto.backends import get_backend

    for service in SERVICES:
        get_backend(service).reset()  # type: ignore[call-overload]


def sqs_at(endpoint: str) -> Any:
    return boto3.session.Session().client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
