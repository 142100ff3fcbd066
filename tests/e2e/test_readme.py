"""README.md's curl walkthrough, run as written against a local stack: README cannot drift from the code.

The block is read from README.md itself and run by bash as it stands (with `set -euo pipefail`:
any failing command fails the run), except its `API=` and `AWS=` lines, which README tells the
reader to set to what `make run` printed and this test sets to its own stack. A `curl` first on the
PATH runs the real curl and notes each call's answer, so each can be checked. Commands added to
the walkthrough later are run too: the run must end without an error and no call may get a 5xx;
the checks below look up the calls they know by method and path and ignore the rest.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from tests.e2e.running_stack import REPO, RunningStack, clean_environment, running_stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.own_stack]

# Runs the real curl with the same arguments, its body to a file, then prints the body as curl would
# have and appends {"args", "status", "body"} to $CURL_LOG. The walkthrough never writes with -o itself.
CURL_NOTING = """#!{python}
import json, os, subprocess, sys, tempfile
with tempfile.NamedTemporaryFile() as body:
    command = ["{curl}", *sys.argv[1:], "-o", body.name, "-w", "%{{http_code}}"]
    done = subprocess.run(command, capture_output=True, text=True)
    answer = open(body.name, "rb").read()
sys.stdout.buffer.write(answer)
sys.stderr.write(done.stderr)
with open(os.environ["CURL_LOG"], "a") as log:
    log.write(json.dumps({{"args": sys.argv[1:], "status": int(done.stdout or 0), "body": answer.decode()}}) + "\\n")
sys.exit(done.returncode)
"""


def walkthrough() -> str:
    """The first sh block after the heading "A walk through with curl", as README.md has it."""
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## A walk through with curl") :]
    found = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert found, "README's walkthrough has no ```sh block"
    return found.group(1)


def for_stack(script: str, stack: RunningStack) -> str:
    """The script with its API= and AWS= lines set to this stack (each must be there, once)."""
    lines = script.splitlines()
    for name, value in (("API", stack.file.api_url), ("AWS", stack.file.endpoints["sqs"])):
        where = [i for i, line in enumerate(lines) if line.startswith(f"{name}=")]
        assert len(where) == 1, f"README's walkthrough must set {name}= on one line, as the reader is told to"
        lines[where[0]] = f"{name}={value}"
    return "\n".join(lines) + "\n"


class Call:
    def __init__(self, noted: dict[str, Any]):
        args: list[str] = noted["args"]
        self.args = args
        self.method = args[args.index("-X") + 1] if "-X" in args else "GET"
        self.url = next(arg for arg in args if arg.startswith("http"))
        self.path = urlsplit(self.url).path
        self.status: int = noted["status"]
        self.body: str = noted["body"]

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"{self.method} {self.path} -> {self.status}"


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[RunningStack, list[Call], str]]:
    # Given a local stack started with the key README says (`make run ARGS="--api-key dev"`), on free ports
    directory = tmp_path_factory.mktemp("readme")
    curl = shutil.which("curl")
    assert curl, "the walkthrough needs curl"
    noting = directory / "bin" / "curl"
    noting.parent.mkdir()
    noting.write_text(CURL_NOTING.format(python=sys.executable, curl=curl))
    noting.chmod(0o755)
    log = directory / "curl.jsonl"
    with running_stack(directory, "--api-key", "dev") as stack:
        # When README's block runs as written, in bash, stopping at the first failing command
        environment = clean_environment(CURL_LOG=str(log))
        environment["PATH"] = f"{noting.parent}:{environment['PATH']}"
        run = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", for_stack(walkthrough(), stack)],
            cwd=directory,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, f"the walkthrough failed (exit {run.returncode}):\n{run.stderr}\n{run.stdout}"
        calls = [Call(json.loads(line)) for line in log.read_text().splitlines()]
        yield stack, calls, run.stdout


def calls_to(calls: list[Call], method: str, path: str) -> list[Call]:
    return [call for call in calls if call.method == method and call.path == path]


def test_every_command_ran_and_none_got_a_server_error(walked):
    _, calls, _ = walked
    commands = re.findall(r"(?:^[ \t]*|\$\()curl ", walkthrough(), re.MULTILINE)  # curl as a command, not in a comment
    assert len(calls) == len(commands) >= 13
    assert all(100 <= call.status < 500 for call in calls), calls


def test_the_four_devices_are_registered_and_listed(walked):
    _, calls, _ = walked
    for device, channel in (("laptop", "email"), ("phone", "sms"), ("iphone", "push"), ("web", "in_app")):
        [put] = calls_to(calls, "PUT", f"/users/ada/devices/{device}")
        assert (put.status, put.json()["channel"]) == (200, channel)
    listed = calls_to(calls, "GET", "/users/ada/devices")[0]
    assert listed.status == 200
    assert {d["device_id"] for d in listed.json()["devices"]} >= {"laptop", "phone", "iphone", "web"}


def test_the_bad_phone_number_is_told_what_an_e164_number_is(walked):
    _, calls, _ = walked
    [bad] = calls_to(calls, "PUT", "/users/ada/devices/desk-phone")
    assert bad.status == 422
    [error] = bad.json()["errors"]
    assert error["field"] == "address" and error["message"].startswith("must be an E.164 phone number: +")


def test_the_notification_is_accepted_once_and_its_retry_gets_the_same_answer(walked):
    _, calls, _ = walked
    first, retry = calls_to(calls, "POST", "/notifications")[:2]
    assert (first.status, retry.status) == (202, 202)
    assert first.json() == retry.json() and first.json()["status"] == "accepted"
    notification_id = first.json()["notification_id"]
    [status] = calls_to(calls, "GET", f"/notifications/{notification_id}")
    assert status.status == 200 and status.json()["notification_id"] == notification_id


def test_every_device_of_ada_gets_the_code_through_its_provider(walked):
    stack, calls, _ = walked
    notification_id = calls_to(calls, "POST", "/notifications")[0].json()["notification_id"]
    headers = {"x-api-key": "dev"}

    # When delivery has finished (it runs behind the 202)
    deadline = time.monotonic() + 60
    record = requests.get(f"{stack.file.api_url}/notifications/{notification_id}", headers=headers, timeout=10).json()
    while record["status"] != "delivered" and time.monotonic() < deadline:
        time.sleep(0.5)
        record = requests.get(
            f"{stack.file.api_url}/notifications/{notification_id}", headers=headers, timeout=10
        ).json()

    # Then all four deliveries were sent, and the providers hold the email, the SMS and the push
    assert record["status"] == "delivered", record
    assert sorted(d["channel"] for d in record["deliveries"]) == ["email", "in_app", "push", "sms"]
    sent = requests.get(f"{stack.file.endpoints['sqs']}/moto-api/data.json", timeout=10).json()
    assert "482913" in json.dumps(sent["ses"]["Message"])
    assert "+14155550100" in json.dumps(sent["sns"]["SMS"])
    assert "482913" in json.dumps(sent["sns"]["PlatformEndpoint"])


def test_inbox_queues_providers_and_logout_answer_as_readme_says(walked):
    _, calls, _ = walked
    assert calls_to(calls, "GET", "/users/ada/inbox")[0].status == 200
    queues = calls_to(calls, "GET", "/queues")[0]
    assert queues.status == 200 and set(queues.json()) == {"intake", "high", "normal", "low", "schedule", "feedback"}
    data = calls_to(calls, "GET", "/moto-api/data.json")[0]
    assert data.status == 200 and {"ses", "sns"} <= set(data.json())
    [logout] = calls_to(calls, "DELETE", "/users/ada/devices/web")
    assert logout.status == 204


def notification_of(call: Call) -> str:
    notification_id: str = call.json()["notification_id"]
    return notification_id


def test_preferences_skip_the_opted_out_email_and_refuse_a_required_category(walked):
    stack, calls, _ = walked
    # Then the preferences were stored, and turning a required category off was a 422 naming it
    stored, refused = calls_to(calls, "PUT", "/users/ada/preferences")
    assert stored.status == 200 and stored.json()["locale"] == "fr-CA"
    assert refused.status == 422 and refused.json()["errors"][0]["field"].startswith("categories")
    # and once the marketing notification has fanned out, its email is skipped with the reason
    [sale] = [c for c in calls_to(calls, "POST", "/notifications") if '"Sale"' in " ".join(c.args)]
    deadline = time.monotonic() + 60
    while True:
        record = requests.get(
            f"{stack.file.api_url}/notifications/{notification_of(sale)}", headers={"x-api-key": "dev"}, timeout=10
        ).json()
        if record["status"] not in ("accepted", "scheduled") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    [email] = [d for d in record["deliveries"] if d["channel"] == "email"]
    assert email["status"] == "skipped" and "marketing" in email["reason"], record
    assert {d["status"] for d in record["deliveries"] if d["channel"] != "email"} <= {
        "queued",
        "sending",
        "sent",
        "deferred",
    }, record


def test_a_template_is_stored_used_and_a_missing_variable_refused_at_once(walked):
    _, calls, _ = walked
    [put] = calls_to(calls, "PUT", "/templates/welcome")
    assert put.status == 200
    templated = [c for c in calls_to(calls, "POST", "/notifications") if '"template"' in " ".join(c.args)]
    assert [c.status for c in templated] == [202, 422]
    assert templated[1].json()["errors"][0]["field"] == "variables" and "name" in templated[1].body


def test_a_scheduled_notification_cancelled_before_its_time_stays_cancelled(walked):
    _, calls, _ = walked
    [scheduled] = [c for c in calls_to(calls, "POST", "/notifications") if "send_at" in " ".join(c.args)]
    reminder = notification_of(scheduled)
    [cancel] = calls_to(calls, "DELETE", f"/notifications/{reminder}")
    [status] = calls_to(calls, "GET", f"/notifications/{reminder}")
    assert (scheduled.status, cancel.status) == (202, 204)
    assert status.json()["status"] == "cancelled" and status.json()["cancelled_at"]


def test_the_inbox_counts_unread_marks_read_and_the_history_lists_what_ada_was_sent(walked):
    _, calls, _ = walked
    [count] = calls_to(calls, "GET", "/users/ada/inbox/unread-count")
    assert count.status == 200 and count.json()["unread"] >= 1
    [read] = [c for c in calls if c.method == "PUT" and c.path.startswith("/users/ada/inbox/")]
    assert read.status == 200 and read.json()["read"] is True
    [marked] = calls_to(calls, "POST", "/users/ada/inbox/mark-all-read")
    assert marked.status == 200 and marked.json()["more"] is False
    [history] = calls_to(calls, "GET", "/users/ada/notifications")
    first = notification_of(calls_to(calls, "POST", "/notifications")[0])
    assert history.status == 200 and first in {n["notification_id"] for n in history.json()["notifications"]}
