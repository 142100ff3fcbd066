"""The local stack's moto server in a process of its own: on the loopback only, deaf to Ctrl-C, gone on stop."""

from __future__ import annotations

import os
import signal

import pytest
import requests

from herald_local.emulator import ProcessEmulator

pytestmark = [pytest.mark.e2e, pytest.mark.own_stack]


def test_the_emulator_process_serves_on_the_loopback_outlives_ctrl_c_and_ends_on_stop() -> None:
    # Given moto started in a process of its own
    emulator = ProcessEmulator()
    try:
        # Then it answers on 127.0.0.1
        assert emulator.endpoint.startswith("http://127.0.0.1:")
        assert requests.get(f"{emulator.endpoint}/moto-api/data.json", timeout=10).ok

        # When the terminal's Ctrl-C reaches it (the whole process group gets it)
        os.kill(emulator.pid, signal.SIGINT)

        # Then it still serves: the stack stops first, then closes its pipe
        assert requests.get(f"{emulator.endpoint}/moto-api/data.json", timeout=10).ok
    finally:
        # When the stack stops it
        emulator.stop()

    # Then the process has ended and nothing answers any more
    with pytest.raises(ProcessLookupError):
        os.kill(emulator.pid, 0)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{emulator.endpoint}/moto-api/data.json", timeout=5)
