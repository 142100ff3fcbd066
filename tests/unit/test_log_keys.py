"""Each log line names the function that wrote it, also when several functions run at once in one process."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import pytest

import deliver.app
from herald.observability import inject_lambda_context, logger
from tests.events import load_event
from tests.fakes import FakeContext, FakeSender
from tests.unit.test_deliver_handler import dependencies_with, record_for


class Lines(logging.Handler):
    """Every line the Powertools logger writes, formatted by its own formatter in the writing thread."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(logger.registered_formatter.format(record)))


@pytest.fixture
def lines() -> Iterator[list[dict[str, Any]]]:
    handler = Lines()
    logger._logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger._logger.removeHandler(handler)


def context_of(function: str) -> FakeContext:
    return replace(FakeContext(), function_name=function, aws_request_id=f"{function}-request")


def test_two_functions_invoked_at_once_each_log_their_own_name(lines):
    # Given two handlers running at once in two threads, each logging after the other has started
    both_started = threading.Barrier(2, timeout=10)

    @inject_lambda_context
    def handler(event: dict[str, Any], context: Any) -> None:
        both_started.wait()
        logger.info("working", event=event["name"])

    threads = [
        threading.Thread(target=handler, args=({"name": name}, context_of(name)))
        for name in ("ApiFunction", "DeliverHighFunction")
    ]

    # When both run
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(15)

    # Then each line carries the name and request id of the function that wrote it
    assert sorted((line["event"], line["function_name"], line["function_request_id"]) for line in lines) == [
        ("ApiFunction", "ApiFunction", "ApiFunction-request"),
        ("DeliverHighFunction", "DeliverHighFunction", "DeliverHighFunction-request"),
    ]


def test_lines_from_a_batchs_worker_threads_name_their_function_while_another_runs(lines, lambda_context):
    # Given a deliver invocation whose two sends (worker threads) wait until another function has been invoked
    other_invoked = threading.Event()

    class Held(FakeSender):
        def send(self, job: Any) -> str:
            assert other_invoked.wait(10)
            return super().send(job)

    event = load_event("deliver")
    event["Records"] = [record_for(event, i, device_id=f"inbox-{i}") for i in range(2)]
    delivering = threading.Thread(
        target=deliver.app.lambda_handler,
        args=(event, context_of("DeliverHighFunction")),
        kwargs={"dependencies": dependencies_with(Held())},
    )

    @inject_lambda_context
    def api_handler(event: dict[str, Any], context: Any) -> None:
        logger.info("answered")

    # When the deliver invocation starts, then the API is invoked in another thread, then the sends finish
    delivering.start()
    api = threading.Thread(target=api_handler, args=({}, context_of("ApiFunction")))
    api.start()
    api.join(10)
    other_invoked.set()
    delivering.join(15)

    # Then the API's line names the API, and each "delivered" line (written in a worker thread) the deliver function
    assert [line["function_name"] for line in lines if line["message"] == "answered"] == ["ApiFunction"]
    delivered = [line for line in lines if line["message"] == "delivered"]
    assert len(delivered) == 2
    assert {line["function_name"] for line in delivered} == {"DeliverHighFunction"}
    assert {line["function_request_id"] for line in delivered} == {"DeliverHighFunction-request"}
