"""The LocalStack leg's own rules: per-service endpoints, the loopback-only check, finding Python 3.13, reading back."""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from herald_local import localstack
from herald_local.endpoints import cloudformation_serving, endpoint_of, unserved
from herald_local.localstack import LegUnavailable, check_loopback_only, find_python, listening_sockets
from herald_local.providers import LocalStackProviderRecords

LEG_ENVIRONMENT = {
    "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:4566",
    "AWS_ENDPOINT_URL_SNS": "http://127.0.0.1:4566",
    "AWS_ENDPOINT_URL_SES": "http://127.0.0.1:4566",
    "AWS_ENDPOINT_URL_CLOUDFORMATION": "http://127.0.0.1:4566",
}


def test_a_per_service_variable_wins_over_the_global_one_and_the_rest_is_left_to_moto():
    # Given the LocalStack leg's variables: everything but DynamoDB on LocalStack
    # Then DynamoDB is the one service the local stack must serve itself
    assert unserved(LEG_ENVIRONMENT) == ["dynamodb"]
    assert unserved({}) == ["cloudformation", "dynamodb", "ses", "sns", "sqs"]
    assert unserved({"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}) == []
    both = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000", "AWS_ENDPOINT_URL_SQS": "http://127.0.0.1:4566"}
    assert (endpoint_of("sqs", both), endpoint_of("sns", both)) == ("http://127.0.0.1:4566", "http://127.0.0.1:5000")


def test_tables_are_created_by_the_cloudformation_of_the_emulator_that_serves_dynamodb(monkeypatch):
    # Given CloudFormation, SQS and SNS on one endpoint and DynamoDB on another
    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDFORMATION", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:4566")
    monkeypatch.delenv("AWS_ENDPOINT_URL_SNS", raising=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:5000")
    made: list[str] = []

    # When each resource type asks which CloudFormation creates it
    choose = cloudformation_serving("main", lambda endpoint: made.append(endpoint) or f"cfn at {endpoint}")
    chosen = {kind: choose(kind) for kind in ("AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::DynamoDB::Table")}

    # Then tables go to DynamoDB's emulator, the rest to the main one, with one client per endpoint
    assert chosen == {
        "AWS::SQS::Queue": "main",
        "AWS::SNS::Topic": "main",
        "AWS::DynamoDB::Table": "cfn at http://127.0.0.1:5000",
    }
    choose("AWS::DynamoDB::Table")
    assert made == ["http://127.0.0.1:5000"]


@pytest.mark.parametrize(
    ("sockets", "refused"),
    [
        ([("127.0.0.1", 4566)], None),
        ([("127.0.0.1", 4566), ("::1", 4566), ("127.0.0.1", 39000)], None),
        ([("0.0.0.0", 4566)], "0.0.0.0:4566"),
        ([("127.0.0.1", 4566), ("::", 4567)], ":::4567"),
        ([("127.0.0.1", 4566), ("10.0.0.5", 4510)], "10.0.0.5:4510"),
        ([("127.0.0.1", 9999)], "does not listen on 127.0.0.1:4566"),
    ],
)
def test_localstack_is_used_only_when_it_listens_on_the_loopback_address_alone(sockets, refused):
    if refused is None:
        check_loopback_only(sockets, 4566)
    else:
        with pytest.raises(LegUnavailable, match=refused):
            check_loopback_only(sockets, 4566)


def test_the_listening_sockets_of_a_process_are_read_from_proc():
    # Given this process listening on a loopback port
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]

        # Then the socket is found for this process, and not for a process that does not exist
        assert ("127.0.0.1", port) in listening_sockets({os.getpid()})
        assert ("127.0.0.1", port) not in listening_sockets({2**22 + 1})


def test_without_python_3_13_the_leg_says_so_plainly(monkeypatch, tmp_path):
    # Given a machine with no pyenv, no python3.13 on the PATH and no explicit choice
    for name in ("HERALD_LOCALSTACK_PYTHON", "PYENV_ROOT", "PYENV_VERSION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))

    # When the leg looks for its Python, Then it stops with the reason and the way out
    with pytest.raises(LegUnavailable, match=r"needs Python 3\.13.*HERALD_LOCALSTACK_PYTHON"):
        find_python()


def test_the_suite_runs_with_localstack_for_its_services_and_nothing_else_redirected(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    environment = localstack.suite_environment("http://127.0.0.1:4566", dynamodb_on_localstack=False)
    endpoints = {k: v for k, v in environment.items() if k.startswith("AWS_ENDPOINT_URL")}
    assert endpoints == LEG_ENVIRONMENT
    assert environment["HERALD_LEG"] == "localstack"
    with_tables = localstack.suite_environment("http://127.0.0.1:4566", dynamodb_on_localstack=True)
    assert with_tables["AWS_ENDPOINT_URL_DYNAMODB"] == "http://127.0.0.1:4566"


# What LocalStack 2026.3.0 answers at its provider routes, as recorded from a real run.
RECORDED = {
    "/_aws/ses": {
        "messages": [
            {
                "Id": "pdofsqhm",
                "Region": "us-east-1",
                "Destination": {"ToAddresses": ["ada@example.com"]},
                "Source": "notifications@example.com",
                "Subject": "Sign-in code",
                "Body": {"text_part": "482913", "html_part": None},
                "Timestamp": "2026-11-21T06:01:42",
            }
        ]
    },
    "/_aws/sns/sms-messages": {
        "sms_messages": {
            "+14155550100": [{"PhoneNumber": "+14155550100", "Message": "Sign-in code: 482913", "MessageId": "m1"}]
        },
        "region": "us-east-1",
    },
    "/_aws/sns/platform-endpoint-messages": {
        "platform_endpoint_messages": {
            "arn:aws:sns:us-east-1:000000000000:endpoint/APNS/herald-local-apns/ff652ed4": [
                {
                    "TargetArn": "arn:aws:sns:us-east-1:000000000000:endpoint/APNS/herald-local-apns/ff652ed4",
                    "Message": json.dumps(json.dumps({"aps": {"alert": {"title": "Sign-in code", "body": "482913"}}})),
                    "MessageStructure": "json",
                    "MessageId": "m2",
                }
            ]
        },
        "region": "us-east-1",
    },
}


@pytest.fixture
def recorded_localstack() -> Iterator[str]:
    class Routes(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps(RECORDED.get(self.path.split("?")[0], {})).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Routes)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_what_localstack_recorded_reads_as_sent_items(recorded_localstack: str, monkeypatch):
    # Given LocalStack's records, and an SNS that no longer knows the endpoint's token
    records = LocalStackProviderRecords(recorded_localstack, region="us-east-1")
    monkeypatch.setattr(records, "_token", lambda arn: "apns-token-1")

    # Then each is read as the same sent item the moto reader gives
    [email] = records.emails()
    assert (email.source, email.to, email.subject, email.body) == (
        "notifications@example.com",
        ("ada@example.com",),
        "Sign-in code",
        "482913",
    )
    [sms] = records.sms()
    assert (sms.phone_number, sms.message) == ("+14155550100", "Sign-in code: 482913")
    [push] = records.pushes()
    assert push.token == "apns-token-1"
    assert json.loads(push.message["APNS"])["aps"]["alert"] == {"title": "Sign-in code", "body": "482913"}
