"""Every sample in events/ is shaped as SAM's `generate-event` shapes its kind, and its handler accepts it.

SAM's own events are kept in tests/sam_events/ (how to make them again: that folder's README.md);
when the SAM CLI is installed (.venv-sam, made by `make validate`), a test checks they still are
what it generates.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

import api.app
import deliver.app
import dlq_redrive.app
import fanout.app
import feedback.app
import schedule.app
from herald.adapters.clients import client
from tests.events import FUNCTION_OF, event_names, load_event
from tests.fakes import FakeContext
from tests.integration.conftest import Deployed

SAM_EVENTS = Path(__file__).parents[1] / "sam_events"
SAM = Path(__file__).parents[2] / ".venv-sam" / "bin" / "sam"
# The kind of each function's event, as `sam local generate-event <service> <event>` names it.
SAM_KIND = {
    "ApiFunction": ("apigateway", "aws-proxy"),
    "FanoutHighFunction": ("sqs", "receive-message"),
    "DeliverHighFunction": ("sqs", "receive-message"),
    "FeedbackFunction": ("sqs", "receive-message"),
    "ScheduleFunction": ("sqs", "receive-message"),
}
HANDLERS = {
    "ApiFunction": api.app,
    "FanoutHighFunction": fanout.app,
    "DeliverHighFunction": deliver.app,
    "FeedbackFunction": feedback.app,
    "DlqRedriveFunction": dlq_redrive.app,
    "ScheduleFunction": schedule.app,
}


def sam_event(function: str) -> dict[str, Any]:
    service, kind = SAM_KIND[function]
    event: dict[str, Any] = json.loads((SAM_EVENTS / f"{service}-{kind}.json").read_text())
    return event


# Maps whose keys are the request's own (its headers, its route's parameters), not fields of the event:
# only their type is compared.
OPEN_MAPS = {
    "headers",
    "multiValueHeaders",
    "pathParameters",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "stageVariables",
    "messageAttributes",
}


def shape_differences(ours: Any, sams: Any, where: str = "") -> list[str]:
    """Where our event lacks a key SAM's has, or holds another JSON type (null goes with anything)."""
    if sams is None or ours is None:
        return []
    if where.rsplit(".", 1)[-1] in OPEN_MAPS:
        return [] if isinstance(ours, dict) else [f"{where}: an object in SAM's, {type(ours).__name__} here"]
    if isinstance(sams, dict):
        if not isinstance(ours, dict):
            return [f"{where or 'event'}: an object in SAM's, {type(ours).__name__} here"]
        missing = [f"{where}.{key}".lstrip(".") + ": missing" for key in sams if key not in ours]
        return missing + [
            difference
            for key in sams
            if key in ours
            for difference in shape_differences(ours[key], sams[key], f"{where}.{key}")
        ]
    if isinstance(sams, list):
        if not isinstance(ours, list):
            return [f"{where}: a list in SAM's, {type(ours).__name__} here"]
        return [d for item in ours[:1] for d in shape_differences(item, sams[0], f"{where}[0]")] if sams else []
    if type(ours) is not type(sams):
        return [f"{where}: {type(sams).__name__} in SAM's, {type(ours).__name__} here"]
    return []


def test_every_sample_event_says_which_function_takes_it():
    assert set(event_names()) == set(FUNCTION_OF), "list each events/ file in tests/events.py FUNCTION_OF"
    assert set(FUNCTION_OF.values()) <= set(HANDLERS)


@pytest.mark.parametrize("name", [n for n in event_names() if FUNCTION_OF.get(n) in SAM_KIND])
def test_a_sample_event_has_every_field_of_sams_generated_event_of_its_kind(name):
    # Given a sample event and the event SAM generates for its function's trigger
    ours, sams = load_event(name), sam_event(FUNCTION_OF[name])

    # Then ours has each of SAM's fields, with the same JSON type
    assert shape_differences(ours, sams) == []


@pytest.mark.skipif(not SAM.exists(), reason="the SAM CLI is not installed here (make validate installs it)")
@pytest.mark.parametrize("kind", sorted(set(SAM_KIND.values())))
def test_the_kept_sam_events_are_what_sam_generates(kind):
    # When the installed SAM CLI generates the event, Then it is the one kept in tests/sam_events/
    generated = subprocess.run([str(SAM), "local", "generate-event", *kind], capture_output=True, text=True, check=True)
    assert json.loads(generated.stdout) == json.loads((SAM_EVENTS / f"{'-'.join(kind)}.json").read_text())


def dead_letters(deployed: Deployed) -> int:
    total = 0
    for queue in (
        "HighIntakeDeadLetterQueue",
        "HighDeadLetterQueue",
        "FeedbackDeadLetterQueue",
        "ScheduleDeadLetterQueue",
    ):
        attributes = client("sqs").get_queue_attributes(
            QueueUrl=deployed.stack.ref(queue), AttributeNames=["ApproximateNumberOfMessages"]
        )
        total += int(attributes["Attributes"]["ApproximateNumberOfMessages"])
    return total


@pytest.mark.parametrize("name", event_names())
def test_the_handler_of_each_sample_event_accepts_it(deployed: Deployed, name: str):
    # Given Herald deployed under moto, and a sample event with the function that takes it
    function = FUNCTION_OF[name]
    module = HANDLERS[function]
    dependencies = module.dependencies_from(deployed.environment(function))

    # When the function handles it
    result = module.lambda_handler(load_event(name), FakeContext(function_name=function), dependencies)

    # Then it is accepted as its kind is: a 2xx, a batch without failures or dead letters, or a redrive's answer
    if function == "ApiFunction":
        assert 200 <= result["statusCode"] < 300, result
    elif function == "DlqRedriveFunction":
        event = load_event(name)
        assert result["dry_run"] is event.get("dry_run", False)
        every = ["high", "normal", "low", "intake-high", "intake-normal", "intake-low", "schedule", "feedback"]
        expected = every if event.get("priority", "all") == "all" else [event["priority"]]
        assert list(result["queues"]) == expected
    else:
        assert result == {"batchItemFailures": []}
        assert dead_letters(deployed) == 0
