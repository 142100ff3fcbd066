"""The moto server the local stack starts: built in one place, run in a process of its own or in this one.

By default it runs in a child process: moto then has an interpreter lock of its own, so on two
cores the emulator and Herald's functions (the API's containers, the pollers, the handlers) run
side by side instead of taking turns, and its SQS gets a constant-time clock (a backlog otherwise
makes every SQS call slower). `Placement.THREAD` keeps it in the stack's process (what
the benchmarks that patch moto in-process ask for). Either way the server is made by `serve()`:
whatever the emulator needs (its address, its state) is done there, for both placements.

`python -m herald_local.emulator [--port N]` is the child: it prints its port, serves until its
standard input closes (the parent stopping, or dying), and ignores Ctrl-C, which the terminal
sends to the whole process group: the parent stops first, then closes the pipe.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

ROOT = Path(__file__).resolve().parent.parent
STARTUP_TIMEOUT = 60  # seconds for the child to import moto and bind its port, on a busy machine


class Placement(StrEnum):
    PROCESS = "process"  # a child process of its own (the default)
    THREAD = "thread"  # a thread of the stack's process


class Emulator(Protocol):
    @property
    def endpoint(self) -> str: ...

    def stop(self) -> None: ...


def quiet_emulator() -> None:
    """moto logs every request and warns about each resource type it skips: noise for a developer."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    logging.getLogger("moto").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", message="Tried to parse", category=UserWarning)


def constant_time_clock() -> bool:
    """Gives moto's SQS a constant-time clock; True when applied.

    moto 5.2 computes "now" through two datetime conversions (about 12 us) and does so for every
    message of a queue on every SQS call (visibility checks, attribute counts): at 2,000 messages a
    single call costs a second of CPU. time.time() gives the same milliseconds since the epoch. The
    scans stay; their cost drops about tenfold. Semantics are unchanged. It patches moto for the
    whole process: the emulator's own process applies it; a stack with moto in a thread does not.
    """
    import moto.core.utils
    import moto.sqs.models

    if moto.sqs.models.unix_time_millis is not moto.core.utils.unix_time_millis:
        return moto.sqs.models.unix_time_millis is _milliseconds_now  # already applied, or moto changed
    moto.sqs.models.unix_time_millis = _milliseconds_now
    return True


def _milliseconds_now(dt: datetime | None = None) -> float:
    if dt is not None:
        import moto.core.utils

        return float(moto.core.utils.unix_time_millis(dt))
    return time.time() * 1000.0


def serve(port: int = 0) -> Any:
    """A started moto server on 127.0.0.1 (never moto's default 0.0.0.0: nothing of Herald's listens
    beyond this machine); `port` 0 picks a free one."""
    from moto.backends import get_backend
    from moto.server import ThreadedMotoServer

    from herald_local.endpoints import SERVICES

    quiet_emulator()
    # moto imports a service's backend on its first request: seconds, which would count against the
    # first call's timeout (CloudFormation's, which touches them all). Here they overlap the stack's start.
    for service in SERVICES:
        get_backend(service)  # type: ignore[call-overload]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


class ThreadEmulator:
    """moto in a thread of this process."""

    def __init__(self, port: int = 0):
        self._server = serve(port)
        host, bound = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{bound}"

    def stop(self) -> None:
        self._server.stop()


class ProcessEmulator:
    """moto in a child process (`python -m herald_local.emulator`). Starting returns at once;
    `endpoint` waits for the child to say its port, so the caller can do other work meanwhile."""

    def __init__(self, port: int = 0):
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            [str(ROOT / "functions"), str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._child = subprocess.Popen(
            [sys.executable, "-m", "herald_local.emulator", "--port", str(port)],
            cwd=ROOT,
            env=environment,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self._endpoint: str | None = None

    @property
    def pid(self) -> int:
        return self._child.pid

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            assert self._child.stdout is not None
            line = _read_line(self._child.stdout, STARTUP_TIMEOUT)
            if not line.strip().isdigit():
                self.stop()
                raise RuntimeError(f"the emulator process did not start (it said {line!r})")
            self._endpoint = f"http://127.0.0.1:{line.strip()}"
        return self._endpoint

    def stop(self) -> None:
        if self._child.stdin and not self._child.stdin.closed:
            self._child.stdin.close()
        try:
            self._child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._child.kill()
            self._child.wait()
        if self._child.stdout:
            self._child.stdout.close()


def _read_line(stream: Any, timeout: float) -> str:
    """The child's first line, or "" if it says nothing within `timeout` seconds."""
    import selectors

    with selectors.DefaultSelector() as selector:
        selector.register(stream, selectors.EVENT_READ)
        if not selector.select(timeout):
            return ""
    line: str = stream.readline()
    return line


def start_emulator(placement: Placement, port: int = 0) -> Emulator:
    if placement is Placement.THREAD:
        return ThreadEmulator(port)
    return ProcessEmulator(port)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m herald_local.emulator", description=__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    arguments = parser.parse_args(argv)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this stops
    constant_time_clock()  # this process is moto's alone
    server = serve(arguments.port)
    print(server.get_host_and_port()[1], flush=True)
    sys.stdin.read()  # until the parent closes it
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
