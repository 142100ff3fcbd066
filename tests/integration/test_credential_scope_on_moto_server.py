"""Unsigned requests to moto's server, their credential scope kept: every service Herald calls answers them
in the client's region; a client of another endpoint still signs."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from herald_local.credential_scope import UNCHECKED_SIGNATURE, scoped_clients

# Not moto's default region (us-east-1): an unsigned request without its scope would land there
REGION = "eu-west-1"


class Stopped(Exception):
    """Raised by the capture hook: the request goes no further."""


def client_at(endpoint: str) -> Any:
    def client(service: str, one_attempt: bool = False) -> Any:
        return boto3.client(
            service,
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return client


def authorization_of(client: Any) -> list[str]:
    """Collects the Authorization header of every request `client` sends."""
    seen: list[str] = []

    def capture(request: Any, **_: Any) -> None:
        seen.append(request.headers.get("Authorization", b"").decode() if request.headers else "")

    client.meta.events.register("before-send", capture)
    return seen


def test_each_service_answers_an_unsigned_scoped_request_in_the_clients_region(moto_server):
    # Given the scoped clients of the emulator's endpoint, in a region that is not moto's default
    clients = scoped_clients(client_at(moto_server), moto_server)
    sqs, sns, ses, dynamodb = clients("sqs"), clients("sns"), clients("ses", one_attempt=True), clients("dynamodb")
    headers = authorization_of(sqs)

    # When each makes something through them
    sqs.create_queue(QueueName="scoped")
    sns.create_topic(Name="scoped")
    ses.verify_email_identity(EmailAddress="sender@example.com")
    dynamodb.create_table(
        TableName="scoped",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )

    # Then moto made each in that region (read back through signed clients there), and the requests carried
    # the credential scope with a signature of zeros
    signed = client_at(moto_server)
    assert any(url.endswith("/scoped") for url in signed("sqs").list_queues()["QueueUrls"])
    assert [t["TopicArn"].split(":")[3] for t in signed("sns").list_topics()["Topics"]] == [REGION]
    assert signed("ses").list_identities()["Identities"] == ["sender@example.com"]
    assert signed("dynamodb").list_tables()["TableNames"] == ["scoped"]
    assert headers == [
        f"AWS4-HMAC-SHA256 Credential=testing/20000101/{REGION}/sqs/aws4_request, SignedHeaders=host, "
        f"Signature={UNCHECKED_SIGNATURE}"
    ]


def test_a_client_of_another_endpoint_signs_its_requests(moto_server):
    # Given the scoped clients of the emulator's endpoint, asked for a client of another endpoint
    elsewhere = "http://127.0.0.1:9"  # nothing listens: the request is stopped before it is sent
    client = scoped_clients(client_at(elsewhere), moto_server)("sqs")
    headers = authorization_of(client)

    def stop(**_: Any) -> None:
        raise Stopped

    client.meta.events.register("before-send", stop)

    # When it makes a call
    with pytest.raises(Stopped):
        client.list_queues()

    # Then the request carries a SigV4 signature computed as AWS checks it
    assert len(headers) == 1
    assert headers[0].startswith("AWS4-HMAC-SHA256 Credential=testing/")
    assert f"/{REGION}/sqs/aws4_request" in headers[0]
    assert UNCHECKED_SIGNATURE not in headers[0]


def test_no_emulator_hands_out_the_clients_as_they_are(moto_server):
    # Given no emulator started by the stack (every endpoint elsewhere)
    factory = client_at(moto_server)

    # When the scoped clients are asked for
    clients = scoped_clients(factory, None)

    # Then they are the process's own, unchanged
    assert clients is factory
