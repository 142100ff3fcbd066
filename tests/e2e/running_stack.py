"""`python -m herald_local` started as a developer starts it, in its own process, for tests that drive it from outside.

The stack writes its stack file and keeps its state where the test says (never the checkout's
.herald-local/), on a free port, with its own moto server (the AWS_ENDPOINT_URL* variables of the test's shell are not
passed on). `herald` is run the same way: the installed command, in a subprocess, pointed at the
stack file by HERALD_STACK_FILE.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from herald_local import stack_file

REPO = Path(__file__).resolve().parents[2]
HERALD = Path(sys.executable).parent / "herald"  # installed by `make setup` (pip install -e .)


def clean_environment(**more: str) -> dict[str, str]:
    """The test's environment without any AWS endpoint chosen (the stack starts its own moto) and without
    PYTHONPATH (the installed project must not need it)."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT_URL")}
    for name in (stack_file.ENVIRONMENT_VARIABLE, "PYTHONPATH"):
        environment.pop(name, None)
    environment.update(more)
    return environment


class RunningStack:
    def __init__(self, process: subprocess.Popen[str], path: Path, output: Path):
        self.process = process
        self.path = path
        self.output = output
        self.file = stack_file.read(path)

    @property
    def printed(self) -> str:
        return self.output.read_text()

    def herald(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The `herald` command, run from another directory, against this stack."""
        result = subprocess.run(
            [str(HERALD), *args],
            cwd=self.path.parent,
            env=clean_environment(HERALD_STACK_FILE=str(self.path)),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check:
            assert result.returncode == 0, f"herald {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
        return result

    def herald_json(self, *args: str, timeout: float = 120) -> Any:
        return json.loads(self.herald(*args, "--json", timeout=timeout).stdout)


@contextmanager
def running_stack(directory: Path, *arguments: str) -> Iterator[RunningStack]:
    """Starts the stack, waits for its stack file, and stops it with Ctrl-C at the end (it must stop cleanly)."""
    assert HERALD.exists(), f"{HERALD} is missing: `make setup` installs the project into .venv"
    path, output = directory / "stack.json", directory / "stack.out"
    with output.open("w") as printed:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "herald_local", "--port", "0", "--stack-file", str(path)),
                *("--state-dir", str(directory / "state"), *arguments),
            ],
            cwd=directory,  # not the checkout: the installed project must work from anywhere
            env=clean_environment(),
            stdout=printed,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 90
        while not path.exists():
            assert process.poll() is None, f"the stack exited:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"no stack file after 90 s:\n{output.read_text()}"
            time.sleep(0.2)
        yield RunningStack(process, path, output)
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
        assert process.returncode == 0, output.read_text()
        assert not path.exists(), "a clean stop removes the stack file"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
