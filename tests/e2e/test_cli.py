"""`herald`, the ops CLI, run as an operator runs it (the installed command, in its own process) against
`python -m herald_local` running in another."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from herald.adapters.dead_letters import DeadLetterQueue
from herald_cli.targets import LocalTarget
from tests.e2e.running_stack import HERALD, RunningStack, clean_environment, running_stack
from tests.events import EVENTS_DIR, FUNCTION_OF, event_names, load_event
from tests.unit.test_feedback import bounce

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.own_stack]
# High priority retries after at most a second: a delivery failing every time is dead-lettered in seconds.
FAST_HIGH = ["HighRetryBaseSeconds=1", "HighRetryCapSeconds=1"]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    directory = tmp_path_factory.mktemp("cli-stack")
    with running_stack(directory, "--api-key", "cli-key", "--parameter-overrides", *FAST_HIGH) as running:
        yield running


def api(stack: RunningStack, method: str, path: str, body: Any = None) -> requests.Response:
    return requests.request(
        method, f"{stack.file.api_url}{path}", json=body, headers={"x-api-key": stack.file.api_key}, timeout=10
    )


def depths(view: dict[str, Any]) -> list[dict[str, Any]]:
    """GET /queues' depths, the intake lanes' (grouped under `intake`) included."""
    return [d for d in view.values() if "visible" in d] + [d for d in view["intake"].values()]


def wait_until_queues_are_empty(stack: RunningStack, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        view = stack.herald_json("queues")
        if all(q["visible"] == 0 and q["in_flight"] == 0 for q in depths(view)):
            return
        assert time.monotonic() < deadline, view
        time.sleep(0.5)


def test_the_command_and_the_local_stack_work_from_any_directory_without_pythonpath(tmp_path: Path):
    # When `herald --help` and `python -m herald_local --help` run from a directory outside the checkout
    environment = clean_environment()
    herald = subprocess.run([str(HERALD), "--help"], cwd=tmp_path, env=environment, capture_output=True, text=True)
    local = subprocess.run(
        [sys.executable, "-m", "herald_local", "--help"], cwd=tmp_path, env=environment, capture_output=True, text=True
    )

    # Then both answer with their usage, no ModuleNotFoundError
    assert herald.returncode == 0 and "redrive" in herald.stdout, herald.stderr
    assert local.returncode == 0 and "--stack-file" in local.stdout, local.stderr


def test_without_a_running_stack_it_says_how_to_start_one(tmp_path: Path):
    # Given no stack file where the command looks
    environment = clean_environment(HERALD_STACK_FILE=str(tmp_path / "stack.json"))

    # When an operator asks for the queues
    result = subprocess.run([str(HERALD), "queues"], cwd=tmp_path, env=environment, capture_output=True, text=True)

    # Then it fails saying why and what to do, without a traceback
    assert result.returncode == 1
    assert "no local stack" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("name", event_names())
def test_invoke_runs_the_function_of_each_sample_event_against_the_running_stack(stack: RunningStack, name: str):
    # Given a sample event and the function that takes it
    function = FUNCTION_OF[name]

    # When `herald invoke <Function> -e events/<name>.json` runs it
    result = stack.herald("invoke", function, "-e", str(EVENTS_DIR / f"{name}.json"))

    # Then its answer is on stdout, as its kind answers...
    answer = json.loads(result.stdout)
    if function == "ApiFunction":
        assert answer["statusCode"] in (200, 202), answer
    elif function == "DlqRedriveFunction":
        assert answer["dry_run"] is load_event(name).get("dry_run", False)
        assert answer["queues"] and all(q["path"] for q in answer["queues"].values())
    else:
        assert answer == {"batchItemFailures": []}
    # ...and its log lines on stderr, each naming this function, then Lambda's REPORT line
    logged = [json.loads(line) for line in result.stderr.splitlines() if line.startswith('{"level"')]
    assert {line["function_name"] for line in logged} <= {function}
    assert "REPORT RequestId:" in result.stderr
    if function != "ApiFunction":  # the API logs only when it accepts a notification
        assert logged, result.stderr


def test_invoke_says_when_a_handler_raises_and_which_functions_there_are(stack: RunningStack):
    # When the redrive function is invoked on an event it refuses (from stdin), and a function that does not exist
    refused = subprocess.run(
        [str(HERALD), "invoke", "DlqRedriveFunction", "-e", "-"],
        input='{"priority": "everything"}',
        cwd=stack.path.parent,
        env=clean_environment(HERALD_STACK_FILE=str(stack.path)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    unknown = stack.herald("invoke", "NoSuchFunction", "-e", str(EVENTS_DIR / "fanout.json"), check=False)

    # Then the first prints Lambda's error payload and exits 1; the second names the functions there are
    assert refused.returncode == 1
    error = json.loads(refused.stdout)
    assert error["errorType"] == "ValidationError" and "priority" in error["errorMessage"]
    assert unknown.returncode == 1 and "FanoutHighFunction" in unknown.stderr and "Traceback" not in unknown.stderr


def test_invoke_on_the_api_reaches_the_running_pipeline_and_logs_with_its_name(stack: RunningStack):
    # Given a registered device of user-42 (the sample events' recipient)
    stack.herald("invoke", "ApiFunction", "-e", str(EVENTS_DIR / "api_register_device.json"))

    # When the sample notification is sent through `herald invoke`
    result = stack.herald("invoke", "ApiFunction", "-e", str(EVENTS_DIR / "api_send_notification.json"))
    notification_id = json.loads(json.loads(result.stdout)["body"])["notification_id"]

    # Then the running stack fans it out and delivers it, as if API Gateway had passed it on
    record = stack.herald_json("status", notification_id, "--wait", "--timeout", "60")
    assert record["status"] == "delivered"
    assert [(d["user_id"], d["channel"], d["status"]) for d in record["deliveries"]] == [("user-42", "email", "sent")]
    assert [json.loads(line)["function_name"] for line in result.stderr.splitlines() if line.startswith("{")] == [
        "ApiFunction"
    ]
    # and the stack's own log lines name the function that wrote each
    wait_until_queues_are_empty(stack)
    lines = [json.loads(line) for line in stack.printed.splitlines() if line.startswith('{"level"')]
    assert {line["message"]: line["function_name"] for line in lines}["fanned out"] == "FanoutHighFunction"
    assert {line["function_name"] for line in lines if line["message"] == "delivered"} == {"DeliverHighFunction"}


def test_a_delivery_dead_lettered_under_faults_is_redriven_and_ends_sent(stack: RunningStack):
    # Given grace's email device, the stack idle, and the metrics read so far
    wait_until_queues_are_empty(stack)
    assert api(stack, "PUT", "/users/grace/devices/mail", {"channel": "email", "address": "grace@example.com"}).ok
    since = str(stack.herald_json("metrics")["last"] or 0)

    # When faults are switched on at run time: every email call fails transiently
    plan = stack.herald_json("faults", "on", "--channel", "email", "--transient-rate", "1")
    assert plan["plan"]["channels"]["email"]["transient_rate"] == 1.0
    sent = api(
        stack, "POST", "/notifications", {"recipients": ["grace"], "title": "t", "body": "b", "priority": "high"}
    )
    notification_id = sent.json()["notification_id"]

    # Then the delivery is tried five times and dead-lettered
    record = stack.herald_json("status", notification_id, "--wait", "--timeout", "60")
    [delivery] = record["deliveries"]
    assert (delivery["status"], delivery["attempts"]) == ("dead_lettered", 5), record
    faults = stack.herald_json("faults", "status")
    assert faults["counts"]["channels"]["email"]["transient"] >= 5

    # When faults are switched off, a dry run shows what waits, and nothing moves
    assert stack.herald_json("faults", "off")["plan"] is None
    dry = stack.herald_json("redrive", "--dry-run", "--priority", "high")
    assert dry["dry_run"] is True and dry["queues"]["high"]["waiting"] == 1
    assert "injected transient failure" in dry["queues"]["high"]["reasons"][0]
    assert stack.herald_json("queues")["high"]["dead_lettered"] == 1
    shown = stack.herald("queues").stdout
    assert all(f"intake.{p}" in shown for p in ("high", "normal", "low")) and "schedule" in shown, shown
    # and a dry run over the intake lanes reads each lane's fan-out DLQ, all empty
    lanes = stack.herald_json("redrive", "--dry-run", "--priority", "intake")
    assert {name: q["waiting"] for name, q in lanes["queues"].items()} == {
        "intake-high": 0,
        "intake-normal": 0,
        "intake-low": 0,
    }

    # When the high DLQ is redriven (the operator's view: a progress bar, then the path taken and why)
    redrive = stack.herald("redrive", "--priority", "high")

    # Then the message moved by receive, send, delete (moto has no move task), and the delivery ends sent
    assert "receive_send_delete" in redrive.stdout and "1 waiting, 1 moved" in redrive.stdout
    assert "no message-move task" in redrive.stdout
    assert "1/1" in redrive.stderr  # the progress bar's last state
    record = stack.herald_json("status", notification_id, "--wait", "--timeout", "60")
    [delivery] = record["deliveries"]
    assert (record["status"], delivery["status"], delivery["redrives"]) == ("delivered", "sent", 1), record
    assert stack.herald_json("queues")["high"]["dead_lettered"] == 0

    # And the metrics read back show it: four retries, one dead letter, then the send and its latency
    def summaries() -> dict[tuple[str, str], dict[str, Any]]:
        answer = stack.herald_json("metrics", "--since", since)["metrics"]
        return {(m["name"], json.dumps(m["dimensions"], sort_keys=True)): m for m in answer}

    email_high = json.dumps({"channel": "email", "priority": "high", "service": "herald"}, sort_keys=True)
    metrics = summaries()
    assert metrics[("DeliveriesRetried", email_high)]["sum"] == 4
    assert metrics[("DeliveriesDeadLettered", email_high)]["sum"] == 1
    assert metrics[("DeliveriesSent", email_high)]["sum"] >= 1
    high = json.dumps({"priority": "high", "service": "herald"}, sort_keys=True)
    assert metrics[("AcceptedToSentLatency", high)]["samples"] >= 1
    assert metrics[("FanoutSize", high)]["sum"] >= 1
    shown = stack.herald("metrics", "--since", since).stdout
    assert "DeliveriesDeadLettered" in shown and "channel=email priority=high" in shown

    # and the stack said when faults went on and off, and printed no traceback (moto's redrive probe included)
    assert "faults ON" in stack.printed and "faults OFF" in stack.printed
    assert "Traceback" not in stack.printed and "Error on request" not in stack.printed


def test_a_bounce_parked_in_the_feedback_dlq_is_listed_redriven_and_retires_the_device(stack: RunningStack):
    # Given linus's email device, and SES's bounce of his address parked in the feedback DLQ with its reason, as the
    # feedback function parks what it failed on five times
    assert api(stack, "PUT", "/users/linus/devices/mail", {"channel": "email", "address": "linus@example.com"}).ok
    target = LocalTarget(stack.file)
    DeadLetterQueue(target.sqs(), target.dead_letter_queues()["feedback"], "feedback").send(
        json.dumps(bounce("linus@example.com")), {}, reason="DynamoDB throttled", receive_count=5
    )

    # When the operator lists the queues and looks at the feedback DLQ (a dry run)
    view = stack.herald_json("queues")
    shown = stack.herald("queues").stdout
    dry = stack.herald_json("redrive", "--dry-run", "--priority", "feedback")

    # Then the queues say a dead letter waits behind the feedback queue, and the dry run says why
    assert view["feedback"]["dead_lettered"] == 1, view
    assert "feedback" in shown, shown
    assert (dry["queues"]["feedback"]["waiting"], dry["queues"]["feedback"]["reasons"]) == (1, ["DynamoDB throttled"])

    # When it is redriven
    redrive = stack.herald("redrive", "--priority", "feedback")

    # Then it moved back into the feedback queue, the feedback function took it, and the device is inactive
    assert "1 waiting, 1 moved" in redrive.stdout, redrive.stdout
    deadline = time.monotonic() + 60
    while True:
        [mail] = api(stack, "GET", "/users/linus/devices").json()["devices"]
        if not mail["active"]:
            break
        assert time.monotonic() < deadline, mail
        time.sleep(0.5)
    assert str(mail["inactive_reason"]).startswith("SES reported a hard bounce"), mail
    assert stack.herald_json("queues")["feedback"]["dead_lettered"] == 0


def test_a_scheduled_send_released_on_time_shows_in_the_schedule_functions_metrics(stack: RunningStack):
    # Given margaret's in-app device, and the metrics read so far
    assert api(stack, "PUT", "/users/margaret/devices/web", {"channel": "in_app"}).ok
    since = str(stack.herald_json("metrics")["last"] or 0)

    # When a notification is scheduled two to three seconds ahead, and goes out
    send_at = (datetime.now(UTC) + timedelta(seconds=3)).replace(microsecond=0)
    body = {"recipients": ["margaret"], "title": "t", "body": "b", "priority": "low", "send_at": send_at.isoformat()}
    sent = api(stack, "POST", "/notifications", body)
    assert sent.status_code == 202, sent.text
    record = stack.herald_json("status", sent.json()["notification_id"], "--wait", "--timeout", "60")
    assert record["status"] == "delivered", record

    # Then the schedule function's metrics read back: one low notification released, and how late, in ms
    metrics = stack.herald_json("metrics", "--since", since)["metrics"]
    found = {(m["name"], json.dumps(m["dimensions"], sort_keys=True)): m for m in metrics}
    low = json.dumps({"priority": "low", "service": "herald"}, sort_keys=True)
    notification = json.dumps({"kind": "notification", "service": "herald"}, sort_keys=True)
    assert found[("NotificationsReleased", low)]["sum"] == 1, sorted(found)
    lateness = found[("ReleaseLateness", notification)]
    assert lateness["samples"] == 1 and 0 <= lateness["maximum"] < 60_000, lateness


def test_the_control_endpoint_is_not_reachable_through_the_api(stack: RunningStack):
    # Given the API's URL and the control endpoint's, both on 127.0.0.1
    assert stack.file.api_url.startswith("http://127.0.0.1:") and stack.file.control_url.startswith("http://127.0.0.1:")
    assert stack.file.api_url != stack.file.control_url

    # When the control routes are asked of the API, with the API key and the control token
    headers = {"x-api-key": stack.file.api_key, "x-herald-control-token": stack.file.control_token}
    answers = [
        requests.request(method, f"{stack.file.api_url}{path}", headers=headers, json={}, timeout=10)
        for method, path in (("GET", "/faults"), ("PUT", "/faults"), ("GET", "/metrics"), ("GET", "/health"))
    ]

    # Then API Gateway knows no such route, and faults stay as they were
    assert [a.status_code for a in answers] == [403, 403, 403, 403]
    assert stack.herald_json("faults", "status")["plan"] is None
