"""Grouped status writes under moto: a recipient's deliveries in one batch are claimed and recorded with one
write each, every copy of a delivery finds its claim whatever batch it arrives in, a partial failure is
retried for the failed device only, a dead-lettered device of a group is revived by the redrive alone, and
the status still answers per device."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from botocore.exceptions import ClientError

import dlq_redrive.app
from herald.adapters.clients import client
from herald.adapters.dead_letters import DEAD_LETTERED_AT_ATTRIBUTE, REASON_ATTRIBUTE
from herald.logic.delivery import UNPARKED_COPY
from herald.logic.ports import ChannelSender
from herald.models.domain import Channel, DeliveryJob, jobs_of
from tests.fakes import FakeContext
from tests.integration.conftest import Deployed
from tests.integration.test_broadcast_under_moto import call_api_with_query
from tests.integration.test_pipeline_under_moto import register, run_fanout, send, status_of
from tests.integration.test_reliability_under_moto import deliver_dependencies, deliver_messages, emails_to

DEVICES = ("mail-1", "mail-2", "mail-3")


class FailingFor:
    """The real SES sender, but for the addresses given, which get the error instead (each time)."""

    def __init__(self, sender: ChannelSender, errors: dict[str, ClientError]):
        self.sender = sender
        self.errors = errors
        self.tried: list[str] = []

    def send(self, job: DeliveryJob) -> str:
        self.tried.append(job.device_id)
        if job.address in self.errors:
            raise self.errors[job.address]
        return self.sender.send(job)


def throttled() -> ClientError:
    return ClientError({"Error": {"Code": "Throttling", "Message": "slow"}}, "SendEmail")


def rejected() -> ClientError:
    return ClientError({"Error": {"Code": "MessageRejected", "Message": "no such mailbox"}}, "SendEmail")


def address(device: str) -> str:
    return f"ada-{device}@example.com"


def three_deliveries(deployed: Deployed) -> tuple[str, dict[str, dict[str, Any]]]:
    """A high notification to ada's three email devices, fanned out: its id and each device's message. Fan-out
    queues the three as one message (a group); here it is split into one message per device, as a version before
    groups queued them and as copies may travel: the claims must hold whatever batches the deliveries meet in."""
    for device in DEVICES:
        register(deployed, "ada", device, {"channel": "email", "address": address(device)})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Code", "body": "1234", "priority": "high"})
    run_fanout(deployed)
    [group] = deployed.receive_all("HighQueue")
    by_device = {
        job.device_id: {**group, "MessageId": f"{group['MessageId']}-{job.device_id}", "Body": job.model_dump_json()}
        for job in jobs_of(group["Body"])
    }
    assert sorted(by_device) == list(DEVICES)
    return notification_id, by_device


def copy_of(message: dict[str, Any], name: str, receive_count: int | None = None) -> dict[str, Any]:
    attributes = dict(message["Attributes"])
    if receive_count is not None:
        attributes["ApproximateReceiveCount"] = str(receive_count)
    return {**message, "MessageId": f"{name}-{message['MessageId']}", "Attributes": attributes}


def by_device(deployed: Deployed, notification_id: str) -> dict[str, dict[str, Any]]:
    return {d["device_id"]: d for d in status_of(deployed, notification_id)["deliveries"]}


def redrive_high(deployed: Deployed, parked: list[dict[str, Any]]) -> int:
    """Makes the dead letters read here visible again, and runs the operator's redrive of the high DLQ: how many
    it moved."""
    for message in parked:
        client("sqs").change_message_visibility(
            QueueUrl=deployed.stack.ref("HighDeadLetterQueue"),
            ReceiptHandle=message["ReceiptHandle"],
            VisibilityTimeout=0,
        )
    redriven = dlq_redrive.app.lambda_handler(
        {"priority": "high"},
        FakeContext(),
        dlq_redrive.app.dependencies_from(deployed.environment("DlqRedriveFunction")),
    )
    moved: int = redriven["total_moved"]
    return moved


@contextmanager
def status_writes() -> Iterator[list[str]]:
    """The UpdateItem calls on recipient status items while inside, by sort key."""
    written: list[str] = []

    def count(params: dict[str, Any], **_: Any) -> None:
        sort_key = params.get("Key", {}).get("sk", {}).get("S", "")
        if sort_key.startswith("recipient#"):
            written.append(sort_key)

    events = client("dynamodb").meta.events
    events.register("provide-client-params.dynamodb.UpdateItem", count, unique_id="grouped-status-writes")
    try:
        yield written
    finally:
        events.unregister("provide-client-params.dynamodb.UpdateItem", unique_id="grouped-status-writes")


def test_three_deliveries_in_one_batch_are_claimed_and_recorded_with_two_writes(deployed: Deployed) -> None:
    # Given a notification to ada's three email devices, waiting in the high queue
    notification_id, messages = three_deliveries(deployed)

    # When one deliver batch holds all three
    with status_writes() as written:
        result = deliver_messages(deployed, list(messages.values()))

    # Then each address got one email, and the status took one claim and one outcome write for the three
    assert result == {"batchItemFailures": []}
    assert [emails_to(address(device)) for device in DEVICES] == [1, 1, 1]
    assert written == ["recipient#ada", "recipient#ada"]
    statuses = by_device(deployed, notification_id)
    assert {device: (d["status"], d["attempts"]) for device, d in statuses.items()} == {
        device: ("sent", 1) for device in DEVICES
    }


def test_copies_of_a_recipients_deliveries_in_other_batches_are_sent_once(deployed: Deployed) -> None:
    # Given ada's three deliveries, delivered in two batches that split them: [1, 2] then [3]
    notification_id, messages = three_deliveries(deployed)
    assert deliver_messages(deployed, [messages["mail-1"], messages["mail-2"]]) == {"batchItemFailures": []}
    assert deliver_messages(deployed, [messages["mail-3"]]) == {"batchItemFailures": []}

    # When SQS copies of each arrive in batches of other shapes: [copy of 2, copy of 3], then [copy of 1, copy of 3]
    first = deliver_messages(deployed, [copy_of(messages["mail-2"], "a"), copy_of(messages["mail-3"], "a")])
    second = deliver_messages(deployed, [copy_of(messages["mail-1"], "b"), copy_of(messages["mail-3"], "b")])

    # Then every copy finds its delivery done: one email per address, one attempt each
    assert first == second == {"batchItemFailures": []}
    assert [emails_to(address(device)) for device in DEVICES] == [1, 1, 1]
    statuses = by_device(deployed, notification_id)
    assert {device: (d["status"], d["attempts"]) for device, d in statuses.items()} == {
        device: ("sent", 1) for device in DEVICES
    }


def test_two_copies_of_a_delivery_in_the_same_batch_send_once(deployed: Deployed) -> None:
    # Given ada's three deliveries and a second copy of the second, all in one batch
    notification_id, messages = three_deliveries(deployed)
    batch = [messages["mail-1"], messages["mail-2"], copy_of(messages["mail-2"], "twin"), messages["mail-3"]]

    # When the batch is delivered
    result = deliver_messages(deployed, batch)

    # Then the twin waits for the first copy's claim (it comes back, then finds the delivery done)
    twin = copy_of(messages["mail-2"], "twin")["MessageId"]
    assert result["batchItemFailures"] == [{"itemIdentifier": twin}]
    assert deliver_messages(deployed, [copy_of(messages["mail-2"], "twin", receive_count=2)]) == {
        "batchItemFailures": []
    }
    assert [emails_to(address(device)) for device in DEVICES] == [1, 1, 1]
    assert {d["status"] for d in by_device(deployed, notification_id).values()} == {"sent"}


def test_a_partial_failure_in_a_group_is_retried_for_the_failed_device_only(deployed: Deployed) -> None:
    # Given ada's three deliveries in one batch: SES throttles the second address and rejects the third
    notification_id, messages = three_deliveries(deployed)
    real = deliver_dependencies(deployed).senders[Channel.EMAIL]
    flaky = FailingFor(real, {address("mail-2"): throttled(), address("mail-3"): rejected()})
    result = deliver_messages(
        deployed, list(messages.values()), dependencies=deliver_dependencies(deployed, email=flaky)
    )

    # Then only the throttled one comes back; the first is sent, the third failed for good
    assert result == {"batchItemFailures": [{"itemIdentifier": messages["mail-2"]["MessageId"]}]}
    statuses = by_device(deployed, notification_id)
    assert {device: d["status"] for device, d in statuses.items()} == {
        "mail-1": "sent",
        "mail-2": "retrying",
        "mail-3": "failed",
    }
    assert statuses["mail-3"]["last_error"].startswith("MessageRejected")

    # When it returns (and, by SQS, so does a stray copy of the first)
    counting = FailingFor(real, {})
    again = deliver_messages(
        deployed,
        [copy_of(messages["mail-2"], "back", receive_count=2), copy_of(messages["mail-1"], "stray")],
        dependencies=deliver_dependencies(deployed, email=counting),
    )

    # Then only the second device's provider is called again: each address holds one email but the rejected one
    assert again == {"batchItemFailures": []}
    assert counting.tried == ["mail-2"]
    assert [emails_to(address(device)) for device in DEVICES] == [1, 1, 0]
    statuses = by_device(deployed, notification_id)
    assert {device: (d["status"], d["attempts"]) for device, d in statuses.items()} == {
        "mail-1": ("sent", 1),
        "mail-2": ("sent", 2),
        "mail-3": ("failed", 1),
    }
    assert statuses["mail-2"]["last_error"] is None
    # And the summary and the deliveries route read the same, per device, two at a time
    summary = status_of(deployed, notification_id)
    assert (summary["status"], summary["counts"]) == ("partially_delivered", {"sent": 2, "failed": 1})
    path = f"/notifications/{notification_id}/deliveries"
    first = call_api_with_query(deployed, path, {"limit": "2"}, notification_id=notification_id)
    rest = call_api_with_query(
        deployed, path, {"limit": "2", "cursor": first["next_cursor"]}, notification_id=notification_id
    )
    listed = first["deliveries"] + rest["deliveries"]
    assert [(d["device_id"], d["status"]) for d in listed] == [
        ("mail-1", "sent"),
        ("mail-2", "sent"),
        ("mail-3", "failed"),
    ]
    assert rest["next_cursor"] is None


def test_a_dead_lettered_device_of_a_group_is_revived_by_the_redrive_alone(deployed: Deployed) -> None:
    # Given ada's three deliveries on their last allowed receive, SES throttling the second address
    notification_id, messages = three_deliveries(deployed)
    real = deliver_dependencies(deployed).senders[Channel.EMAIL]
    flaky = deliver_dependencies(deployed, email=FailingFor(real, {address("mail-2"): throttled()}))
    last = [copy_of(m, "last", receive_count=5) for m in messages.values()]
    assert deliver_messages(deployed, last, dependencies=flaky) == {"batchItemFailures": []}
    statuses = by_device(deployed, notification_id)
    assert {device: d["status"] for device, d in statuses.items()} == {
        "mail-1": "sent",
        "mail-2": "dead_lettered",
        "mail-3": "sent",
    }

    # When stray SQS copies of the second and first jobs arrive, without Herald's DLQ mark
    strays = [copy_of(messages["mail-2"], "stray"), copy_of(messages["mail-1"], "stray")]
    assert deliver_messages(deployed, strays) == {"batchItemFailures": []}

    # Then neither is sent: the second's copy is parked beside the dead letter, the first's finds it done
    assert [emails_to(address(device)) for device in DEVICES] == [1, 0, 1]
    parked = deployed.receive_all("HighDeadLetterQueue")
    reasons = sorted(m["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] for m in parked)
    assert reasons == [UNPARKED_COPY, "last attempt failed: Throttling: slow"]

    # When the operator redrives the DLQ and the deliver function gets both redriven messages in one batch
    assert redrive_high(deployed, parked) == 2
    back = deployed.receive_all("HighQueue")
    assert all(DEAD_LETTERED_AT_ATTRIBUTE in m["MessageAttributes"] for m in back)
    result = deliver_messages(deployed, back)
    # (both are copies of the second delivery: the first claims it, the other waits, then finds it done)
    [waiting] = result["batchItemFailures"]
    [twin] = [m for m in back if m["MessageId"] == waiting["itemIdentifier"]]
    assert deliver_messages(deployed, [copy_of(twin, "again", receive_count=2)]) == {"batchItemFailures": []}

    # Then the second device is sent once, with one redrive counted; its group mates are untouched
    assert [emails_to(address(device)) for device in DEVICES] == [1, 1, 1]
    statuses = by_device(deployed, notification_id)
    assert {device: (d["status"], d["redrives"], d["attempts"]) for device, d in statuses.items()} == {
        "mail-1": ("sent", 0, 1),
        "mail-2": ("sent", 1, 2),
        "mail-3": ("sent", 0, 1),
    }


def test_fan_out_queues_a_recipients_devices_as_one_message_and_a_dead_letter_of_it_revives_only_its_failed_device(
    deployed: Deployed,
) -> None:
    # Given ada's three email devices, and a notification to her fanned out: one message holds the three
    for device in DEVICES:
        register(deployed, "ada", device, {"channel": "email", "address": address(device)})
    notification_id = send(deployed, {"recipients": ["ada"], "title": "Code", "body": "1234", "priority": "high"})
    run_fanout(deployed)
    [group] = deployed.receive_all("HighQueue")
    assert [job.device_id for job in jobs_of(group["Body"])] == list(DEVICES)

    # When it is handled on its last allowed receive while SES throttles the second address
    real = deliver_dependencies(deployed).senders[Channel.EMAIL]
    flaky = deliver_dependencies(deployed, email=FailingFor(real, {address("mail-2"): throttled()}))
    with status_writes() as written:
        assert deliver_messages(deployed, [copy_of(group, "last", receive_count=5)], dependencies=flaky) == {
            "batchItemFailures": []
        }

    # Then the two others are sent (one claim and one outcome write for the three), the second is dead-lettered,
    # and the whole message waits in the DLQ with the reason
    assert written == ["recipient#ada", "recipient#ada"]
    assert [emails_to(address(device)) for device in DEVICES] == [1, 0, 1]
    assert {device: d["status"] for device, d in by_device(deployed, notification_id).items()} == {
        "mail-1": "sent",
        "mail-2": "dead_lettered",
        "mail-3": "sent",
    }
    [parked] = deployed.receive_all("HighDeadLetterQueue")
    assert parked["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] == "last attempt failed: Throttling: slow"

    # When the operator redrives it and the deliver function handles it
    assert redrive_high(deployed, [parked]) == 1
    counting = FailingFor(real, {})
    back = deployed.receive_all("HighQueue")
    assert deliver_messages(deployed, back, dependencies=deliver_dependencies(deployed, email=counting)) == {
        "batchItemFailures": []
    }

    # Then only the dead-lettered device is sent: each address holds one email, its mates were not tried again
    assert counting.tried == ["mail-2"]
    assert [emails_to(address(device)) for device in DEVICES] == [1, 1, 1]
    statuses = by_device(deployed, notification_id)
    assert {device: (d["status"], d["redrives"]) for device, d in statuses.items()} == {
        "mail-1": ("sent", 0),
        "mail-2": ("sent", 1),
        "mail-3": ("sent", 0),
    }
