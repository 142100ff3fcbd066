"""Devices under moto (issue 10, finding 1): one push token, two users, seen from each side over the API,
with SNS's one-endpoint-per-token rule and DynamoDB's index and transactions doing the work."""

from __future__ import annotations

import json

from moto.sns.models import sns_backends

from tests.integration.conftest import Deployed
from tests.integration.test_pipeline_under_moto import (
    ACCOUNT,
    REGION,
    call_api,
    register,
    run_deliver,
    run_fanout,
    send,
    status_of,
)

PHONE = {"channel": "push", "address": "tokX", "platform": "fcm"}


def devices_of(deployed: Deployed, user: str) -> dict[str, dict[str, object]]:
    response = call_api(deployed, "GET", f"/users/{user}/devices", user_id=user)
    assert response["statusCode"] == 200, response
    return {device["device_id"]: device for device in json.loads(response["body"])["devices"]}


def pushes_to(endpoint_arn: str) -> list[str]:
    """What SNS delivered to the endpoint: each message's body text."""
    endpoint = sns_backends[ACCOUNT][REGION].platform_endpoints.get(endpoint_arn)
    return [json.loads(message)["default"] for message in endpoint.messages.values()] if endpoint else []


def test_a_token_bob_registers_after_alice_reaches_only_bob_and_alices_logout_leaves_it(deployed: Deployed) -> None:
    # Given alice registered her phone, then bob registered the same token: both answered 200
    assert register(deployed, "alice", "phone", PHONE)["statusCode"] == 200
    assert register(deployed, "bob", "phone", PHONE)["statusCode"] == 200
    [endpoint_arn] = sns_backends[ACCOUNT][REGION].platform_endpoints

    # When a notification goes to each of them
    to_alice = send(deployed, {"recipients": ["alice"], "title": "t", "body": "for alice", "priority": "high"})
    to_bob = send(deployed, {"recipients": ["bob"], "title": "t", "body": "for bob", "priority": "high"})
    run_fanout(deployed)
    run_deliver(deployed, "high")

    # Then alice sees her phone inactive, saying its token went to another user, and her notification reached no phone
    alice = devices_of(deployed, "alice")["phone"]
    assert alice["active"] is False
    assert "registered by another user" in str(alice["inactive_reason"])
    alices = status_of(deployed, to_alice)
    assert (alices["status"], alices["inactive_devices_skipped"]) == ("no_devices", ["alice/phone"])
    # and bob sees his phone active, his notification sent to the token's endpoint, which got only his
    assert devices_of(deployed, "bob")["phone"]["active"] is True
    assert status_of(deployed, to_bob)["status"] == "delivered"
    assert pushes_to(endpoint_arn) == ["for bob"]

    # When alice logs out of her phone
    assert (
        call_api(deployed, "DELETE", "/users/alice/devices/phone", user_id="alice", device_id="phone")["statusCode"]
        == 204
    )

    # Then bob's endpoint still exists and bob still gets pushes
    assert endpoint_arn in sns_backends[ACCOUNT][REGION].platform_endpoints
    again = send(deployed, {"recipients": ["bob"], "title": "t", "body": "still bob", "priority": "high"})
    run_fanout(deployed)
    run_deliver(deployed, "high")
    assert status_of(deployed, again)["status"] == "delivered"
    assert pushes_to(endpoint_arn) == ["for bob", "still bob"]

    # When bob logs out too, Then the endpoint nobody uses is deleted
    call_api(deployed, "DELETE", "/users/bob/devices/phone", user_id="bob", device_id="phone")
    assert endpoint_arn not in sns_backends[ACCOUNT][REGION].platform_endpoints


def test_registering_the_token_back_moves_it_back(deployed: Deployed) -> None:
    # Given alice's token moved to bob
    register(deployed, "alice", "phone", PHONE)
    register(deployed, "bob", "phone", PHONE)

    # When alice registers it again
    register(deployed, "alice", "phone", PHONE)

    # Then alice is active and bob is the one who sees it moved; SNS still has one endpoint, now alice's
    assert devices_of(deployed, "alice")["phone"]["active"] is True
    assert devices_of(deployed, "bob")["phone"]["active"] is False
    [endpoint] = sns_backends[ACCOUNT][REGION].platform_endpoints.values()
    assert endpoint.custom_user_data == "alice"
