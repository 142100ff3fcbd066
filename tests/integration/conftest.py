"""Integration tier: the handlers under moto, with every resource made from template.yaml itself."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from typing import Any

import pytest
from moto import mock_aws

from herald.adapters.clients import client
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


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployed]:
    # Given Herald's resources, made from the template, in an in-process moto
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
