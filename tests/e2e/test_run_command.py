"""The command `make run` starts: `python -m herald_local`, as a developer runs it in a terminal."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


def test_the_local_stack_serves_prints_its_url_and_key_and_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    # Given a clean environment: no AWS endpoint chosen, so the stack starts its own (its state in a
    # folder of the test's, never the developer's .herald-local, and its stack file the test's too)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    environment["PYTHONPATH"] = f"functions{os.pathsep}."
    environment["HERALD_STACK_FILE"] = str(tmp_path / "stack.json")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "herald_local", "--port", "0", "--api-key", "cli-key", "--log-level", "WARNING"),
            *("--state-dir", str(tmp_path / "state")),
        ],
        cwd=REPO,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        # as a shell's background job starts it: with SIGINT ignored, which Python then keeps
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        # When it is ready, it prints the API URL and the key
        printed = ""
        deadline = time.monotonic() + 60
        assert process.stdout is not None
        while "Ctrl-C" not in printed and time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break
            printed += line
        url = re.search(r"API URL:\s+(http://127\.0\.0\.1:\d+)", printed)
        assert url, printed
        assert re.search(r"API key:\s+cli-key", printed), printed

        # Then the API answers with the key and refuses without it
        assert requests.get(f"{url.group(1)}/queues", headers={"x-api-key": "cli-key"}, timeout=10).status_code == 200
        assert requests.get(f"{url.group(1)}/queues", timeout=10).status_code == 403

        # When Ctrl-C is pressed, Then it stops by itself, exit code 0, and says so
        process.send_signal(signal.SIGINT)
        rest, _ = process.communicate(timeout=20)
        assert process.returncode == 0, printed + rest
        assert "stopped." in rest
        assert "Traceback" not in printed + rest
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
