"""Integration tier: the handlers under moto, with every resource made from template.yaml itself."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber
from moto.server import ThreadedMotoServer

from herald.adapters.clients import client
from herald_local.emulator import quiet_emulator
from herald_local.provision import Stack, provision
from herald_local.stack import emulator_parameters, function_environments
from herald_local.template import HeraldTemplate


@cache
def template() -> HeraldTemplate:
    return HeraldTemplate.load()


@dataclass
class Deployed:
    stack: Stack
    environments: dict[str, dict[str, str]]

    def environment(self, function: str) -> dict[str, str]:
        return self.environments[function]

    def receive_all(self, queue: str) -> list[dict[str, Any]]:
        """Every message waiting in a queue (by logical id), each received once."""
        sqs = client("sqs")
        received: list[dict[str, Any]] = []
        while True:
            batch = sqs.receive_message(
                QueueUrl=self.stack.ref(queue),
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                AttributeNames=["All"],
                VisibilityTimeout=60,
            ).get("Messages", [])
            if not batch:
                return received
            received.extend(batch)

    def bodies(self, queue: str) -> list[dict[str, Any]]:
        return [json.loads(m["Body"]) for m in self.receive_all(queue)]


# moto alone is not atomic: two UpdateItems on one item from two threads can interleave, and one is lost
# (docs/emulators.md, "Atomic conditional writes"). AWS applies each write whole, and the local stack's
# emulator serves DynamoDB one request at a time for that reason; the in-process moto here does the same,
# since a deliver batch's groups write a recipient's one status item from threads of their own.
_DYNAMODB_TURN = threading.Lock()


def _dynamodb_one_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    process_request = BotocoreStubber.process_request

    def one_at_a_time(self: BotocoreStubber, request: Any) -> Any:
        if "dynamodb" not in request.url:
            return process_request(self, request)
        with _DYNAMODB_TURN:
            return process_request(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", one_at_a_time)


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    # Given Herald's resources, made from the template, in an in-process moto that applies each DynamoDB
    # request whole, as AWS does
    _dynamodb_one_at_a_time(monkeypatch)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_DYNAMODB"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        client.cache_clear()
        parameters = emulator_parameters(template(), {}, client)
        stack = provision(
            template(), parameters, client("cloudformation"), client("sns"), "us-east-1", ses=client("ses")
        )
        yield Deployed(stack, function_environments(template(), stack))
    client.cache_clear()


@pytest.fixture
def moto_server() -> Iterator[str]:
    """moto's own threaded server on 127.0.0.1 (not the local stack's emulator, with its front): its endpoint."""
    quiet_emulator()  # as the local stack starts its emulator
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
