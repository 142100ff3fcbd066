"""The fault injector inside the local event source mapping, under moto: duplicated messages, crashed processes."""

from __future__ import annotations

import dataclasses
import json
import time
from collections import Counter
from collections.abc import Callable, Iterator

import pytest

from herald.adapters.clients import client
from herald.models.domain import Channel, DeliveryJob
from herald_local.event_source import QueuePoller
from herald_local.faults import ChannelFaults, FaultInjector, FaultPlan
from herald_local.functions import LocalFunction
from tests.events import load_event
from tests.integration.conftest import Deployed, template

FUNCTION = "DeliverHighFunction"


def in_app_job(n: int) -> DeliveryJob:
    sample = DeliveryJob.model_validate_json(load_event("deliver")["Records"][0]["body"])
    return sample.model_copy(update={"notification_id": f"chaos-{n}", "user_id": f"user-{n}"})


def deliver_function(deployed: Deployed, injector: FaultInjector) -> LocalFunction:
    spec = dataclasses.replace(template().functions[FUNCTION], timeout=2)
    return LocalFunction(spec, deployed.environment(FUNCTION), hook=injector.hook)


@pytest.fixture
def run_poller(deployed: Deployed) -> Iterator[Callable[[LocalFunction, FaultInjector], QueuePoller]]:
    started: list[QueuePoller] = []

    def start(function: LocalFunction, injector: FaultInjector) -> QueuePoller:
        [source] = [s for s in template().event_sources if s.function == FUNCTION]
        poller = QueuePoller(
            client("sqs"),
            source,
            deployed.stack.ref(source.queue),
            deployed.stack.arn(source.queue),
            function,
            concurrency=2,
            faults=injector,
        )
        poller.start()
        started.append(poller)
        return poller

    yield start
    for poller in started:
        poller.stop()


def wait_until(done: Callable[[], bool], timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "not done in time"
        time.sleep(0.05)


def queue_is_empty(deployed: Deployed) -> bool:
    attributes = client("sqs").get_queue_attributes(
        QueueUrl=deployed.stack.ref("HighQueue"),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return attributes["ApproximateNumberOfMessages"] == attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def delivery_status(deployed: Deployed, job: DeliveryJob) -> dict[str, str]:
    item = (
        client("dynamodb")
        .get_item(
            TableName=deployed.environment(FUNCTION)["STATUS_TABLE"],
            Key={"notification_id": {"S": job.notification_id}, "sk": {"S": f"recipient#{job.user_id}"}},
            ConsistentRead=True,
        )
        .get("Item", {})
    )
    # The recipient's item holds one map per device; this device's, by the names the status store writes.
    entry = item.get(f"d#{job.device_id}", {}).get("M", {})
    return {"status": entry["s"]["S"]} if "s" in entry else {}


def test_duplicated_messages_are_each_consumed_once_more(deployed: Deployed, run_poller) -> None:
    # Given 30 delivery jobs on the high queue and a plan duplicating a quarter of received messages
    jobs = [in_app_job(n) for n in range(30)]
    for job in jobs:
        client("sqs").send_message(QueueUrl=deployed.stack.ref("HighQueue"), MessageBody=job.model_dump_json())
    injector = FaultInjector(FaultPlan(seed=11, duplicate_rate=0.25))
    function = deliver_function(deployed, injector)

    # When the event source mapping drains the queue
    run_poller(function, injector)
    wait_until(lambda: sum(len(i.bodies) for i in list(function.invocations)) >= 30 and queue_is_empty(deployed))

    # Then the function saw every job, and as many extra copies as duplicates were injected
    seen = Counter(json.loads(body)["notification_id"] for i in function.invocations for body in i.bodies)
    duplicates = injector.counts().duplicates_total
    assert set(seen) == {job.notification_id for job in jobs}
    assert duplicates > 0
    assert sum(seen.values()) == 30 + duplicates
    assert injector.counts().duplicates == {deployed.stack.ref("HighQueue"): duplicates}


def test_a_crashed_invocation_fails_its_batch_which_returns_and_the_poller_lives_on(
    deployed: Deployed, run_poller
) -> None:
    # Given a job on the high queue (visibility 1 s here), and the process crashing after every send
    queue = deployed.stack.ref("HighQueue")
    client("sqs").set_queue_attributes(QueueUrl=queue, Attributes={"VisibilityTimeout": "1"})
    job = in_app_job(1)
    client("sqs").send_message(QueueUrl=queue, MessageBody=job.model_dump_json())
    injector = FaultInjector(FaultPlan(default=ChannelFaults(crash_after_send_rate=1.0)))
    function = deliver_function(deployed, injector)

    # When the mapping invokes the function
    poller = run_poller(function, injector)
    wait_until(lambda: any(i.crashed for i in list(function.invocations)))

    # Then the journal records a crash of the whole batch, and no status followed the provider's send
    [crash] = [i for i in function.invocations if i.crashed]
    assert (crash.failed, "SimulatedCrash" in (crash.error or "")) == (1, True)
    assert delivery_status(deployed, job).get("status") != "sent"

    # When the crashes stop, Then the message comes back after its visibility timeout and is delivered
    injector.plan = FaultPlan()
    wait_until(lambda: delivery_status(deployed, job).get("status") == "sent" and queue_is_empty(deployed))
    assert poller._thread.is_alive()
    receives = [i for i in function.invocations if any(job.notification_id in body for body in i.bodies)]
    assert len(receives) >= 2 and not receives[-1].crashed
    # The inbox got the crashed send and one more: receives in between found the dead invocation's
    # claim still held and waited; the first after it expired took it over (in_app may be written again).
    assert injector.counts().channels[Channel.IN_APP].provider_calls == 2
