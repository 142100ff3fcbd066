"""The redrive against moto's server, which has no message-move task: asked once, quietly, then the fallback."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config

from herald.adapters.redrive import Redrive
from herald.models.redrive import DeadLetterRoute, RedrivePath


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def sqs_client(endpoint: str, attempts: int) -> Any:
    return boto3.client(
        "sqs",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(retries={"mode": "standard", "total_max_attempts": attempts}),
    )


def test_three_queues_redriven_ask_the_server_once_and_it_prints_no_traceback(moto_server):
    # Given three DLQs with a message each, the function's two clients (its own retries 3 times, the probe once),
    # and whatever moto's server logs caught
    sqs, probe = sqs_client(moto_server, 3), sqs_client(moto_server, 1)
    routes = []
    for name in ("high", "normal", "low"):
        dlq = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
        queue = sqs.create_queue(QueueName=name)["QueueUrl"]
        sqs.send_message(QueueUrl=dlq, MessageBody=f"dead {name}")
        routes.append(DeadLetterRoute(name, dlq, queue))
    asked: list[str] = []
    for client in (sqs, probe):
        client.meta.events.register("before-send.sqs.StartMessageMoveTask", lambda **kw: asked.append("start"))
    caught = Records()
    logging.getLogger("werkzeug").addHandler(caught)

    # When the three are redriven by one container
    try:
        redrive = Redrive(sqs, probe=probe)
        results = [redrive.move(route, deadline=float("inf")) for route in routes]
    finally:
        logging.getLogger("werkzeug").removeHandler(caught)

    # Then the server was asked for a move task once, printed nothing about it, and each message moved back
    assert asked == ["start"]
    assert not [m for m in caught.messages if "message_move_task" in m or "Traceback" in m]
    for route, result in zip(routes, results, strict=True):
        assert (result.path, result.moved) == (RedrivePath.RECEIVE_SEND_DELETE, 1)
        assert result.note is not None and "asked once" in result.note
        [moved] = sqs.receive_message(QueueUrl=route.destination_url)["Messages"]
        assert moved["Body"] == f"dead {route.name}"
