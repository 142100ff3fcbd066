"""End-to-end tier: the local stack started in this process, driven over real HTTP."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest
import requests

from herald.logic.ports import ChannelSender
from herald.models.domain import Channel, DeliveryJob
from herald.models.failures import DeliveryFailed
from herald_local.endpoints import Emulator, emulator_at
from herald_local.providers import ProviderRecords, provider_records
from herald_local.stack import LocalStack, StackOptions

T = TypeVar("T")
API_KEY = "e2e-test-key"
# Fast retries so a test sees a message retried and dead-lettered in seconds, not minutes.
FAST_RETRIES = {
    f"{priority}{bound}": "1"
    for priority in ("High", "Normal", "Low")
    for bound in ("RetryBaseSeconds", "RetryCapSeconds")
}


class ScriptedEmailOutage:
    """The email provider, failing transiently a scripted number of times per address, then sending."""

    def __init__(self) -> None:
        self.failures_left: dict[str, int] = {}
        self.calls: dict[str, int] = {}

    def wrap(self, sender: ChannelSender) -> ChannelSender:
        outage = self

        class Flaky:
            def send(self, job: DeliveryJob) -> str:
                address = job.address or ""
                outage.calls[address] = outage.calls.get(address, 0) + 1
                if outage.failures_left.get(address, 0) > 0:
                    outage.failures_left[address] -= 1
                    raise DeliveryFailed("injected: email provider unavailable (503)")
                return sender.send(job)

        return Flaky()


class ArrivalGate:
    """The API's device reads (GET /users/{id}/devices), held when armed until a number of requests are
    inside the API function at once: how a test shows requests are served concurrently."""

    def __init__(self) -> None:
        self._barrier: threading.Barrier | None = None

    @contextmanager
    def armed(self, requests_at_once: int, timeout: float = 10) -> Iterator[None]:
        self._barrier = threading.Barrier(requests_at_once, timeout=timeout)
        try:
            yield
        finally:
            self._barrier = None

    def wrap(self, registry: Any) -> Any:
        gate = self

        class Gated:
            def devices_of(self, user_id: str) -> Any:
                barrier = gate._barrier
                if barrier is not None:
                    barrier.wait()  # BrokenBarrierError (a 502) if the others never arrive
                return registry.devices_of(user_id)

            def __getattr__(self, name: str) -> Any:
                return getattr(registry, name)

        return Gated()


class Herald:
    """The running local stack, as a test talks to it."""

    def __init__(self, stack: LocalStack, outage: ScriptedEmailOutage, gate: ArrivalGate | None = None):
        self.stack = stack
        self.url = stack.api_url
        self.outage = outage
        self.gate = gate or ArrivalGate()  # holds nothing unless the stack's hook wraps the API with it
        # Which emulator serves SQS decides the redrive path; SES and SNS are read back where they run
        assert stack.endpoint is not None
        self.sqs_emulator: Emulator = emulator_at(stack.endpoint)
        self.providers: ProviderRecords = provider_records(stack.endpoints)
        self.http = requests.Session()
        self.http.headers["x-api-key"] = API_KEY

    def put_device(self, user: str, device: str, body: dict[str, Any]) -> requests.Response:
        return self.http.put(f"{self.url}/users/{user}/devices/{device}", json=body, timeout=10)

    def send(self, body: dict[str, Any]) -> str:
        response = self.http.post(f"{self.url}/notifications", json=body, timeout=10)
        assert response.status_code == 202, response.text
        notification_id: str = response.json()["notification_id"]
        return notification_id

    def status(self, notification_id: str) -> dict[str, Any]:
        response = self.http.get(f"{self.url}/notifications/{notification_id}", timeout=10)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def wait_for_status(
        self, notification_id: str, done: Callable[[dict[str, Any]], bool], timeout: float = 20
    ) -> dict[str, Any]:
        return eventually(lambda: self.status(notification_id), done, timeout)


def eventually(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 20, every: float = 0.1) -> T:
    """Polls `read` until `done` holds: delivery is asynchronous; the wait is bounded."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value):
        if time.monotonic() > deadline:
            raise AssertionError(f"not done after {timeout} s; last seen: {value!r}")
        time.sleep(every)
        value = read()
    return value


@pytest.fixture(scope="package")
def herald() -> Iterator[Herald]:
    outage = ScriptedEmailOutage()
    gate = ArrivalGate()

    def hook(function: str, dependencies: Any) -> Any:
        if function == "ApiFunction":
            return dataclasses.replace(dependencies, registry=gate.wrap(dependencies.registry))
        if not function.startswith("Deliver"):
            return dependencies
        senders = {**dependencies.senders, Channel.EMAIL: outage.wrap(dependencies.senders[Channel.EMAIL])}
        return dataclasses.replace(dependencies, senders=senders)

    # A stack name of its own: an emulator that outlives the run (a LocalStack container) keeps no old messages here
    options = StackOptions(
        api_port=0,
        api_key=API_KEY,
        parameters=FAST_RETRIES,
        hook=hook,
        log_level="WARNING",
        stack_name=f"herald-e2e-{uuid.uuid4().hex[:8]}",
    )
    with LocalStack(options) as stack:
        yield Herald(stack, outage, gate)
