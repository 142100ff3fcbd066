"""dlq_redrive under moto: no message-move task there, so every move goes by receive, send, delete."""

from __future__ import annotations

import json
from typing import Any

import dlq_redrive.app
from herald.adapters.clients import client
from herald.adapters.dead_letters import REASON_ATTRIBUTE, DeadLetterQueue
from tests.fakes import FakeContext
from tests.integration.conftest import Deployed
from tests.integration.test_feedback_under_moto import devices_of, run_feedback
from tests.integration.test_pipeline_under_moto import register
from tests.unit.test_feedback import bounce

QUEUES = {
    "high": "High",
    "normal": "Normal",
    "low": "Low",
    "intake-high": "HighIntake",
    "intake-normal": "NormalIntake",
    "intake-low": "LowIntake",
    "schedule": "Schedule",
    "feedback": "Feedback",
}


def dead_letter(deployed: Deployed, queue: str, body: str, reason: str) -> None:
    """Parks a message in a DLQ the way Herald's consumers do: original attributes plus the reason."""
    prefix = QUEUES[queue]
    DeadLetterQueue(client("sqs"), deployed.stack.ref(f"{prefix}DeadLetterQueue"), f"{prefix}Queue").send(
        body, {"priority": {"DataType": "String", "StringValue": queue}}, reason=reason, receive_count=5
    )


def redrive(deployed: Deployed, event: dict[str, Any]) -> dict[str, Any]:
    dependencies = dlq_redrive.app.dependencies_from(deployed.environment("DlqRedriveFunction"))
    result: dict[str, Any] = dlq_redrive.app.lambda_handler(event, FakeContext(), dependencies)
    return result


def test_redriving_all_moves_each_dlq_back_into_its_own_queue_with_its_attributes(deployed: Deployed) -> None:
    # Given one dead letter in each of Herald's eight DLQs
    for queue in QUEUES:
        dead_letter(deployed, queue, f"job for {queue}", reason=f"{queue} provider down")

    # When the operator redrives all of them
    result = redrive(deployed, {"priority": "all"})

    # Then each went back to its own queue, by receive, send, delete (moto has no move task), and says why
    assert result["total_moved"] == 8
    for queue, prefix in QUEUES.items():
        outcome = result["queues"][queue]
        assert (outcome["path"], outcome["waiting"], outcome["moved"]) == ("receive_send_delete", 1, 1), queue
        assert "no message-move task" in outcome["note"]
        [back] = deployed.receive_all(f"{prefix}Queue")
        assert back["Body"] == f"job for {queue}"
        assert back["MessageAttributes"]["priority"]["StringValue"] == queue
        assert back["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] == f"{queue} provider down"
        assert deployed.receive_all(f"{prefix}DeadLetterQueue") == []


def test_a_limit_moves_at_most_that_many_and_leaves_the_rest(deployed: Deployed) -> None:
    # Given five dead letters on normal
    for n in range(5):
        dead_letter(deployed, "normal", f"job {n}", reason="timeout")

    # When the operator redrives at most three
    result = redrive(deployed, {"priority": "normal", "limit": 3})

    # Then three are back in the normal queue and two still wait
    assert result["queues"]["normal"]["moved"] == 3
    assert len(deployed.receive_all("NormalQueue")) == 3
    assert len(deployed.receive_all("NormalDeadLetterQueue")) == 2


def test_a_dry_run_reports_depth_and_reasons_and_leaves_every_message_ready(deployed: Deployed) -> None:
    # Given twelve dead letters on high, with two different reasons
    for n in range(12):
        dead_letter(deployed, "high", f"job {n}", reason="MessageRejected" if n % 2 else "provider down")

    # When the operator asks for a dry run
    result = redrive(deployed, {"priority": "high", "dry_run": True})

    # Then it says twelve wait, shows ten reasons, moves nothing...
    outcome = result["queues"]["high"]
    assert (result["dry_run"], outcome["path"], outcome["waiting"], outcome["moved"]) == (True, "dry_run", 12, 0)
    assert len(outcome["reasons"]) == 10
    assert set(outcome["reasons"]) <= {"MessageRejected", "provider down"}
    assert deployed.receive_all("HighQueue") == []
    # ...and every message is visible again at once, ready for the real redrive
    assert len(deployed.receive_all("HighDeadLetterQueue")) == 12


def test_an_empty_dlq_reports_nothing_to_move(deployed: Deployed) -> None:
    # When the operator redrives an empty low DLQ, Then nothing moves and nothing fails
    result = redrive(deployed, {"priority": "low"})
    assert (result["total_waiting"], result["total_moved"]) == (0, 0)
    assert list(result["queues"]) == ["low"]


def test_a_bounce_the_feedback_function_could_not_process_is_redriven_and_then_retires_the_device(
    deployed: Deployed,
) -> None:
    # Given ada's email device, and SES's bounce of her address parked in the feedback DLQ (the function failed on
    # it five times: DynamoDB throttled, say), the way the feedback consumer parks it
    register(deployed, "ada", "mail", {"channel": "email", "address": "ada@example.com"})
    body = json.dumps(bounce("ada@example.com"))
    DeadLetterQueue(client("sqs"), deployed.stack.ref("FeedbackDeadLetterQueue"), "feedback").send(
        body, {}, reason="ProvisionedThroughputExceededException", receive_count=5
    )
    assert devices_of(deployed, "ada")["mail"]["active"] is True

    # When the operator looks (a dry run), then redrives "feedback", and the feedback function reads its queue
    dry = redrive(deployed, {"priority": "feedback", "dry_run": True})
    moved = redrive(deployed, {"priority": "feedback"})
    assert run_feedback(deployed) == {"batchItemFailures": []}

    # Then the dry run said why it waited, the redrive moved it back into the feedback queue (its source), and
    # the device is now inactive, for the bounce
    assert dry["queues"]["feedback"]["reasons"] == ["ProvisionedThroughputExceededException"]
    assert list(moved["queues"]) == ["feedback"] and moved["total_moved"] == 1
    assert deployed.receive_all("FeedbackDeadLetterQueue") == []
    mail = devices_of(deployed, "ada")["mail"]
    assert mail["active"] is False and str(mail["inactive_reason"]).startswith("SES reported a hard bounce")
