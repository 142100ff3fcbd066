"""Issue 10, findings 7 and 8: `python -m herald_local` keeps its state across a kill -9 and a restart,
`--fresh` starts empty, and a taken port is one line naming it, not a traceback."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import requests

from herald_local.providers import MotoProviderRecords
from herald_local.state import StateFolder
from tests.e2e.conftest import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]
REPO = Path(__file__).resolve().parents[2]
USERS = 4
NOTIFICATIONS = 20
DELIVERED_WITHIN = 120  # seconds: generous, for a machine shared with other work


def command_environment(stack_file: Path) -> dict[str, str]:
    """A clean environment: no AWS endpoint chosen, so the command starts its own emulator; its stack file
    is the test's (never the checkout's, which a developer's running stack may own)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_ENDPOINT_URL", "HERALD_API_KEY"))}
    environment["PYTHONPATH"] = f"functions{os.pathsep}."
    environment["HERALD_STACK_FILE"] = str(stack_file)
    return environment


class RunningHerald:
    """`python -m herald_local` in a process of its own, as a developer starts it, until it prints Ctrl-C."""

    def __init__(self, state: Path, *arguments: str):
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "herald_local", "--port", "0", "--log-level", "WARNING"),
                *("--state-dir", str(state), *arguments),
            ],
            cwd=REPO,
            env=command_environment(state.parent / "stack.json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.printed = ""
        deadline = time.monotonic() + 90
        assert self.process.stdout is not None
        while "Ctrl-C" not in self.printed and time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.printed += line
        assert "Ctrl-C" in self.printed, self.printed
        self.url = self._printed(r"API URL:\s+(\S+)")
        self.key = self._printed(r"API key:\s+(\S+)")
        self.endpoint = self._printed(r"AWS endpoint:\s+(\S+)")
        self.http = requests.Session()
        self.http.headers["x-api-key"] = self.key

    def _printed(self, pattern: str) -> str:
        found = re.search(pattern, self.printed)
        assert found, self.printed
        return found.group(1)

    def call(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        return self.http.request(method, f"{self.url}{path}", timeout=10, **kwargs)

    def aws(self, service: str) -> Any:
        return boto3.session.Session().client(
            service,
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    def resources(self) -> dict[str, int]:
        """How many of each resource the emulator holds: a restart must not make any twice."""
        sns = self.aws("sns")
        return {
            "queues": len(self.aws("sqs").list_queues().get("QueueUrls", [])),
            "tables": len(self.aws("dynamodb").list_tables()["TableNames"]),
            "stacks": len(self.aws("cloudformation").describe_stacks()["Stacks"]),
            "topics": len(sns.list_topics()["Topics"]),
            "subscriptions": len(sns.list_subscriptions()["Subscriptions"]),
            "platform_applications": len(sns.list_platform_applications()["PlatformApplications"]),
        }

    def emulator_pid(self) -> int:
        """The emulator process this stack started (its only child)."""
        [child] = children_of(self.process.pid)
        return child

    def kill_9(self) -> None:
        self.process.kill()
        self.process.wait(timeout=20)

    def ctrl_c(self) -> str:
        self.process.send_signal(signal.SIGINT)
        rest, _ = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, self.printed + rest
        return rest

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=20)


def children_of(pid: int) -> list[int]:
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended meanwhile
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return children


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has ended; its parent has not read its status yet


@pytest.fixture
def processes() -> Iterator[list[RunningHerald]]:
    started: list[RunningHerald] = []
    yield started
    for running in started:  # whatever an assertion left running
        running.stop()


def start(processes: list[RunningHerald], state: Path, *arguments: str) -> RunningHerald:
    running = RunningHerald(state, *arguments)
    processes.append(running)
    return running


def wait_for_a_snapshot_taken_after(state: Path, moment_ns: int) -> None:
    """Waits until the kept snapshot was taken after `moment_ns` (time.time_ns()): it then holds what was answered
    by that moment. (The file's time is not enough: a snapshot whose state was read just before a change is
    written after it.) A failure shows when the last snapshot was taken."""
    eventually(
        lambda: StateFolder(state).taken_at(),
        lambda taken: taken is not None and taken.timestamp() * 1e9 > moment_ns,
        timeout=60,
    )


def test_after_kill_9_and_a_restart_notifications_devices_and_queued_messages_are_still_there(
    tmp_path: Path, processes: list[RunningHerald]
) -> None:
    # Given `python -m herald_local` keeping its state in a folder, with users' devices registered
    # (an email and an in-app inbox each) and 20 notifications sent and delivered
    state = tmp_path / "state"
    first = start(processes, state)
    assert "started empty" in first.printed
    users = [f"user-{u}" for u in range(USERS)]
    for user in users:
        assert first.call(
            "PUT", f"/users/{user}/devices/mail", json={"channel": "email", "address": f"{user}@example.com"}
        ).ok
        assert first.call("PUT", f"/users/{user}/devices/web", json={"channel": "in_app"}).ok
    notifications = [
        first.call(
            "POST",
            "/notifications",
            json={"recipients": users[n % 2 :: 2], "title": "t", "body": f"n{n}", "priority": "high"},
        ).json()["notification_id"]
        for n in range(NOTIFICATIONS)
    ]
    statuses = {
        n: eventually(
            lambda n=n: first.call("GET", f"/notifications/{n}").json(),
            lambda s: s["status"] == "delivered",
            DELIVERED_WITHIN,
        )
        for n in notifications
    }
    # and a message waiting in a queue nothing polls (a dead-letter queue)
    sqs = first.aws("sqs")
    [dlq] = sqs.list_queues(QueueNamePrefix="herald-local-HighDeadLetterQueue")["QueueUrls"]
    sqs.send_message(QueueUrl=dlq, MessageBody='{"waiting": "for a redrive"}')
    emails = len(MotoProviderRecords(first.endpoint).emails())
    resources = first.resources()
    # and a change whose snapshot was taken, and one made right before the kill, with no snapshot after it
    assert first.call("PUT", "/users/marker/devices/web", json={"channel": "in_app"}).ok
    applied = time.time_ns()
    wait_for_a_snapshot_taken_after(state, applied)
    assert first.call("PUT", "/users/marker/devices/last", json={"channel": "in_app"}).ok
    emulator = first.emulator_pid()

    # When it is killed with SIGKILL and started again on the same folder
    first.kill_9()
    second = start(processes, state)

    # Then its emulator process did not outlive it: its pipe closed, it saved and ended
    eventually(lambda: running(emulator), lambda alive: not alive, timeout=60)
    # and the new one says it restored the state, with the same API key, and every resource exists once
    assert "restored from" in second.printed, second.printed
    assert second.key == first.key
    assert second.resources() == resources
    # and every notification's status is there as it was, the devices and inboxes too
    for notification_id, status in statuses.items():
        assert second.call("GET", f"/notifications/{notification_id}").json() == status
    for user in users:
        devices = second.call("GET", f"/users/{user}/devices").json()["devices"]
        assert sorted(d["device_id"] for d in devices) == ["mail", "web"]
        assert (
            len(second.call("GET", f"/users/{user}/inbox", params={"limit": 100}).json()["items"]) == NOTIFICATIONS // 2
        )
    # and the change made right before the kill too: the emulator process saved it on its way out
    assert sorted(d["device_id"] for d in second.call("GET", "/users/marker/devices").json()["devices"]) == [
        "last",
        "web",
    ]
    # and what SES received, and the message waiting in the dead-letter queue
    assert len(MotoProviderRecords(second.endpoint).emails()) == emails == NOTIFICATIONS * USERS // 2
    assert second.call("GET", "/queues").json()["high"]["dead_lettered"] == 1

    # When it is stopped with Ctrl-C right after one more notification, and started again
    last = second.call(
        "POST", "/notifications", json={"recipients": users[:1], "title": "t", "body": "last", "priority": "high"}
    ).json()
    eventually(
        lambda: second.call("GET", f"/notifications/{last['notification_id']}").json(),
        lambda s: s["status"] == "delivered",
        DELIVERED_WITHIN,
    )
    assert "stopped." in second.ctrl_c()
    third = start(processes, state)

    # Then that notification is there too: a clean stop saves the state last
    assert third.call("GET", f"/notifications/{last['notification_id']}").json()["status"] == "delivered"
    assert third.resources() == resources
    third.ctrl_c()

    # When it is started with --fresh on the same folder
    fresh = start(processes, state, "--fresh")

    # Then it is empty: no device, no notification, nothing queued or sent
    assert "started empty" in fresh.printed
    assert fresh.call("GET", f"/users/{users[0]}/devices").json()["devices"] == []
    assert fresh.call("GET", f"/notifications/{notifications[0]}").status_code == 404
    assert fresh.call("GET", "/queues").json()["high"]["dead_lettered"] == 0
    assert MotoProviderRecords(fresh.endpoint).emails() == []
    assert fresh.resources() == resources
    fresh.ctrl_c()


@pytest.mark.parametrize(
    ("option", "what"),
    [("--port", "the API"), ("--aws-port", "the AWS endpoint"), ("--control-port", "the control endpoint")],
)
def test_a_taken_port_is_one_line_naming_it_and_how_to_pick_another(tmp_path: Path, option: str, what: str) -> None:
    # Given a port something else listens on, on 127.0.0.1
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        # When `python -m herald_local` is told to listen there
        finished = subprocess.run(
            [sys.executable, "-m", "herald_local", "--state-dir", str(tmp_path / "state"), option, str(port)],
            cwd=REPO,
            env=command_environment(tmp_path / "stack.json"),
            capture_output=True,
            text=True,
            timeout=60,
        )

    # Then it exits non-zero with one line naming the port and how to pick another, and no traceback
    printed = (finished.stdout + finished.stderr).strip()
    assert finished.returncode != 0
    assert len(printed.splitlines()) == 1, printed
    assert str(port) in printed and what in printed, printed
    assert f'make run ARGS="{option} ' in printed, printed
    assert "Traceback" not in printed


def test_with_moto_in_a_thread_the_state_is_kept_too(tmp_path: Path, processes: list[RunningHerald]) -> None:
    # Given `python -m herald_local --emulator thread` keeping its state, with a device registered and snapshotted
    state = tmp_path / "state"
    first = start(processes, state, "--emulator", "thread")
    assert children_of(first.process.pid) == []  # no emulator process: moto is in the stack's own
    assert first.call("PUT", "/users/ada/devices/web", json={"channel": "in_app"}).ok
    applied = time.time_ns()
    wait_for_a_snapshot_taken_after(state, applied)

    # When it is killed with SIGKILL and started again on the same folder
    first.kill_9()
    second = start(processes, state, "--emulator", "thread")

    # Then the device is there
    assert "restored from" in second.printed, second.printed
    assert [d["device_id"] for d in second.call("GET", "/users/ada/devices").json()["devices"]] == ["web"]

    # When another is registered and it is stopped with Ctrl-C at once, then started again
    assert second.call("PUT", "/users/ada/devices/mail", json={"channel": "email", "address": "ada@example.com"}).ok
    second.ctrl_c()
    third = start(processes, state, "--emulator", "thread")

    # Then that one is there too: a clean stop saves last
    assert sorted(d["device_id"] for d in third.call("GET", "/users/ada/devices").json()["devices"]) == ["mail", "web"]
    third.ctrl_c()


def test_when_its_emulator_process_dies_the_stack_says_so_and_ends(
    tmp_path: Path, processes: list[RunningHerald]
) -> None:
    # Given `python -m herald_local` running, moto in its own process
    running_herald = start(processes, tmp_path / "state")

    # When that process is killed on its own
    os.kill(running_herald.emulator_pid(), signal.SIGKILL)

    # Then the stack ends with an error, saying in one line that its emulator ended
    rest, _ = running_herald.process.communicate(timeout=60)
    assert running_herald.process.returncode == 1
    assert "its emulator process ended unexpectedly" in rest
    assert "Traceback" not in rest
