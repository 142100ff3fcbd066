"""Issue 10, finding 6: on the local stack a conditional write has one winner, so concurrent copies of a job send once.

moto's DynamoDB checks a condition, then writes, with nothing held in between; the local stack's
emulator lets DynamoDB requests through one at a time (herald_local/emulator.py). Races need
threads to switch at the wrong moment: these tests make the interpreter switch as often as it
can while they race, so a missing lock shows on any machine, loaded or not.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import boto3
import pytest
from botocore.config import Config

from herald.adapters.queues import PRIORITY_ATTRIBUTE
from herald.models.domain import DeliveryJob
from herald_local.providers import provider_records
from herald_local.stack import LocalStack, StackOptions
from tests.e2e.conftest import API_KEY, ArrivalGate, Herald, ScriptedEmailOutage, eventually

pytestmark = pytest.mark.e2e
CALLERS = 10
ROUNDS = 60
TRIALS = 5


@contextmanager
def threads_switching_often() -> Iterator[None]:
    """The interpreter hands the CPU to another thread every microsecond instead of every 5 ms."""
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(before)


def race(callers: list[Any], table: str, key: str) -> int:
    """Every caller tries the same `attribute_not_exists` UpdateItem at the same moment; returns how many won."""
    start = threading.Barrier(len(callers))
    winners: list[int] = []
    failures: list[BaseException] = []

    def attempt(index: int, dynamodb: Any) -> None:
        start.wait()
        try:
            dynamodb.update_item(
                TableName=table,
                Key={"pk": {"S": key}},
                UpdateExpression="SET claimed_by = :me",
                ConditionExpression="attribute_not_exists(pk)",
                ExpressionAttributeValues={":me": {"S": str(index)}},
            )
            winners.append(index)
        except dynamodb.exceptions.ConditionalCheckFailedException:
            pass
        except BaseException as error:  # anything else would hide a lost race: make it fail the test
            failures.append(error)

    threads = [threading.Thread(target=attempt, args=(i, c)) for i, c in enumerate(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not failures, failures
    return len(winners)


def test_ten_concurrent_conditional_updates_have_exactly_one_winner_every_round(herald: Herald) -> None:
    # Given the local stack's DynamoDB endpoint, a table on it, and ten callers with a connection each
    endpoint = herald.stack.endpoints["dynamodb"]
    callers = [
        boto3.session.Session().client("dynamodb", endpoint_url=endpoint, config=Config(retries={"max_attempts": 1}))
        for _ in range(CALLERS)
    ]
    table = f"herald-e2e-race-{uuid.uuid4().hex[:8]}"
    callers[0].create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    try:
        # When in each of 60 rounds the ten race one attribute_not_exists UpdateItem on a fresh key
        with threads_switching_often():
            winners = [race(callers, table, uuid.uuid4().hex) for _ in range(ROUNDS)]

        # Then every round had exactly one winner; the nine others got ConditionalCheckFailed
        assert [(round_, won) for round_, won in enumerate(winners) if won != 1] == []
    finally:
        callers[0].delete_table(TableName=table)


@dataclass
class HeldJobs:
    """Stands in for the fan-out's topic: keeps each delivery job instead of publishing it, so the test
    decides how many copies reach the priority queue, and when."""

    jobs: list[DeliveryJob] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def publish(self, jobs: list[DeliveryJob]) -> int:
        with self.lock:
            self.jobs.extend(jobs)
        return len(jobs)

    def of(self, notification_id: str) -> list[DeliveryJob]:
        with self.lock:
            return [job for job in self.jobs if job.notification_id == notification_id]


@pytest.fixture(scope="module")
def held() -> Iterator[tuple[Herald, HeldJobs]]:
    jobs = HeldJobs()

    def hold_fan_out(function: str, dependencies: Any) -> Any:
        return replace(dependencies, topic=jobs) if function.startswith("Fanout") else dependencies  # every lane

    # Claims expire after 2 s, so a copy that found the job claimed comes back soon and finds it sent.
    parameters = {"DeliverTimeoutSeconds": "2", "PriorityQueueVisibilitySeconds": "12"}
    options = StackOptions(
        api_port=0,
        api_key=API_KEY,
        parameters=parameters,
        hook=hold_fan_out,
        log_level="WARNING",
        stack_name=f"herald-e2e-{uuid.uuid4().hex[:8]}",
    )
    with LocalStack(options) as stack:
        yield Herald(stack, ScriptedEmailOutage(), ArrivalGate()), jobs


def test_ten_copies_of_one_fresh_delivery_job_sent_at_once_are_delivered_exactly_once(
    held: tuple[Herald, HeldJobs],
) -> None:
    herald, jobs = held
    stack = herald.stack
    sqs = boto3.session.Session().client("sqs", endpoint_url=stack.endpoints["sqs"])
    high_queue = stack.stack.ref("HighQueue") if stack.stack else ""
    providers = provider_records(stack.endpoints)
    for trial in range(TRIALS):
        # Given a fresh email delivery job (fanned out, recorded `queued`, not yet on any queue)
        address = f"race-{trial}-{uuid.uuid4().hex[:8]}@example.com"
        user = f"racer-{uuid.uuid4().hex[:8]}"
        assert herald.put_device(user, "mail", {"channel": "email", "address": address}).status_code == 200
        notification_id = herald.send({"recipients": [user], "title": "Race", "body": "one copy", "priority": "high"})
        [job] = eventually(lambda n=notification_id: jobs.of(n), lambda held_jobs: len(held_jobs) == 1)

        # When ten copies of it are sent to the high-priority queue at once (one SendMessageBatch:
        # its poller takes them in batches of 5, side by side, and each batch sends concurrently)
        with threads_switching_often():
            sqs.send_message_batch(
                QueueUrl=high_queue,
                Entries=[
                    {
                        "Id": str(copy),
                        "MessageBody": job.model_dump_json(),
                        "MessageAttributes": {
                            PRIORITY_ATTRIBUTE: {"DataType": "String", "StringValue": job.priority.value}
                        },
                    }
                    for copy in range(10)
                ],
            )
            status = herald.wait_for_status(notification_id, lambda s: s["status"] == "delivered", timeout=60)
            # every copy handled: the ones that found the job claimed came back and found it sent
            eventually(lambda: herald_queue(herald, "high"), lambda q: q["visible"] + q["in_flight"] == 0, 60)

        # Then the provider received it once, after one attempt
        received = [email for email in providers.emails() if address in email.to]
        assert len(received) == 1, f"trial {trial}: {len(received)} emails to {address}"
        [delivery] = status["deliveries"]
        assert (delivery["status"], delivery["attempts"]) == ("sent", 1), delivery


def herald_queue(herald: Herald, priority: str) -> dict[str, Any]:
    response = herald.http.get(f"{herald.url}/queues", timeout=10)
    assert response.status_code == 200, response.text
    depths: dict[str, Any] = response.json()[priority]
    return depths
