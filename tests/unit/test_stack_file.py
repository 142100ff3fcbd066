"""The stack file: how a running local stack tells `herald` where it is, and how a stale one is told apart."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from herald_local import stack_file
from herald_local.control import ControlEndpoint
from herald_local.faults import FaultInjector
from herald_local.metrics import EmfCollector


def described(pid: int, control_url: str = "http://127.0.0.1:9", token: str = "t") -> stack_file.StackFile:
    return stack_file.StackFile(
        pid=pid,
        started_at=0.0,
        api_url="http://127.0.0.1:3000",
        api_key="dev",
        region="us-east-1",
        endpoints={"sqs": "http://127.0.0.1:5000", "dynamodb": "http://127.0.0.1:5001"},
        control_url=control_url,
        control_token=token,
        functions={
            "FanoutHighFunction": stack_file.FunctionEntry(
                handler="fanout.app.lambda_handler", timeout=30, environment={"QUEUE_URL": "q"}
            )
        },
    )


def test_it_is_written_for_its_owner_only_and_read_back_whole(tmp_path: Path):
    # Given a stack's description, When it is written to a directory that does not exist yet
    path = tmp_path / ".herald-local" / "stack.json"
    stack_file.write(path, described(os.getpid()))

    # Then only its owner may read it (it holds the API key), and it reads back the same
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stack_file.read(path) == described(os.getpid())
    assert described(1).endpoint_variables() == {
        "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:5000",
        "AWS_ENDPOINT_URL_DYNAMODB": "http://127.0.0.1:5001",
    }


def test_a_stack_removes_only_its_own_file(tmp_path: Path):
    # Given a file another stack (another pid) wrote since
    path = tmp_path / "stack.json"
    stack_file.write(path, described(os.getpid() + 1))

    # When this process removes "its" file, Then the other's stays; its own goes
    stack_file.remove(path, os.getpid())
    assert path.exists()
    stack_file.write(path, described(os.getpid()))
    stack_file.remove(path, os.getpid())
    assert not path.exists()


def test_a_file_left_by_a_stack_that_died_or_does_not_answer_is_not_running(tmp_path: Path):
    # Given a file naming a process that has exited
    path = tmp_path / "stack.json"
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stack_file.write(path, described(int(ended.stdout)))
    # Then it is not running
    assert stack_file.running(path) is None

    # Given a live process whose control endpoint does not answer, Then it is not running either
    stack_file.write(path, described(os.getpid(), control_url="http://127.0.0.1:9"))
    assert stack_file.running(path) is None

    # Given no file at all, Then nothing runs
    assert stack_file.running(tmp_path / "none.json") is None


def test_a_live_stack_whose_control_endpoint_answers_is_running(tmp_path: Path):
    # Given a live process with a control endpoint that knows the file's token
    endpoint = ControlEndpoint(FaultInjector(), EmfCollector(), port=0)
    endpoint.start()
    try:
        path = tmp_path / "stack.json"
        stack_file.write(path, described(os.getpid(), endpoint.url, endpoint.token))

        # Then it is running; with another token it is not
        assert stack_file.running(path) == described(os.getpid(), endpoint.url, endpoint.token)
        stack_file.write(path, described(os.getpid(), endpoint.url, "stale-token"))
        assert stack_file.running(path) is None
    finally:
        endpoint.stop()
