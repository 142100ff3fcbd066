"""Registering (login) and unregistering (logout) a user's devices."""

from __future__ import annotations

import pytest

from herald.logic.registration import PlatformNotConfigured, register_device, unregister_device
from herald.models.api import EmailRegistration, InAppRegistration, PushRegistration
from herald.models.domain import Channel, Platform
from tests.fakes import REGISTERED_AT, FakeDeviceRegistry, FakePushEndpoints, make_device


def push(token: str, platform: Platform = Platform.APNS) -> PushRegistration:
    return PushRegistration(channel="push", address=token, platform=platform)


def test_registering_an_email_device_stores_it():
    # Given a user with no devices
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()

    # When they register their email
    device = register_device(
        registry, endpoints, "user-42", "laptop-mail", EmailRegistration(channel="email", address="ada@example.com")
    )

    # Then the registry has it, new, with no push endpoint
    assert registry.get("user-42", "laptop-mail") == device
    assert (device.channel, device.address, device.endpoint_arn) == (Channel.EMAIL, "ada@example.com", None)
    assert device.created_at == device.updated_at
    assert endpoints.endpoints == {}


def test_re_registering_keeps_created_at_and_updates_the_rest():
    # Given a device registered in January
    registry = FakeDeviceRegistry([make_device("user-42", "laptop-mail", Channel.EMAIL, address="old@example.com")])

    # When it is registered again with a new address
    device = register_device(
        registry,
        FakePushEndpoints(),
        "user-42",
        "laptop-mail",
        EmailRegistration(channel="email", address="new@example.com"),
    )

    # Then it is the same device, first seen in January, now with the new address
    assert device.created_at == REGISTERED_AT
    assert device.updated_at > REGISTERED_AT
    assert registry.get("user-42", "laptop-mail").address == "new@example.com"
    assert len(registry.devices) == 1


def test_push_on_an_unconfigured_platform_is_refused_and_nothing_is_stored():
    # Given a deployment with an APNs application only
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints(platforms=[Platform.APNS])

    # When an Android phone registers
    with pytest.raises(PlatformNotConfigured, match="fcm"):
        register_device(registry, endpoints, "user-42", "pixel", push("fcm-token", Platform.FCM))

    # Then neither a device nor an endpoint exists
    assert registry.devices == {}
    assert endpoints.endpoints == {}


def test_registering_a_push_device_creates_its_platform_endpoint():
    # Given a deployment with both push platforms
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()

    # When an iPhone registers its token
    device = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-1"))

    # Then its device points at a new APNs endpoint holding that token
    assert device.platform is Platform.APNS
    assert endpoints.endpoints[device.endpoint_arn] == (Platform.APNS, "apns-token-1")
    assert registry.get("user-42", "iphone").endpoint_arn == device.endpoint_arn


def test_a_new_token_for_a_push_device_updates_its_endpoint_in_place():
    # Given a registered iPhone
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    first = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-1"))

    # When the app registers it again with a rotated token
    again = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-2"))

    # Then the same endpoint carries the new token and nothing is removed
    assert again.endpoint_arn == first.endpoint_arn
    assert endpoints.endpoints == {first.endpoint_arn: (Platform.APNS, "apns-token-2")}
    assert endpoints.removed == []
    assert again.created_at == first.created_at


def test_a_push_device_moving_to_another_platform_gets_an_endpoint_of_that_platform():
    # Given a device id registered as an iPhone
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    apns = register_device(registry, endpoints, "user-42", "phone", push("apns-token", Platform.APNS))

    # When the same device id registers an FCM token
    fcm = register_device(registry, endpoints, "user-42", "phone", push("fcm-token", Platform.FCM))

    # Then its endpoint belongs to the FCM application, and the APNs one is gone
    assert endpoints.endpoints[fcm.endpoint_arn] == (Platform.FCM, "fcm-token")
    assert endpoints.removed == [apns.endpoint_arn]


def test_a_push_device_re_registered_as_in_app_loses_its_endpoint():
    # Given a registered iPhone
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    phone = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-1"))

    # When the same device id is registered for the in-app inbox
    device = register_device(registry, endpoints, "user-42", "iphone", InAppRegistration(channel="in_app"))

    # Then its endpoint is removed and the device keeps none
    assert endpoints.removed == [phone.endpoint_arn]
    assert device.endpoint_arn is None
    assert device.platform is None


def test_unregistering_a_push_device_removes_it_and_its_endpoint():
    # Given a registered iPhone and an inbox
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    phone = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-1"))
    register_device(registry, endpoints, "user-42", "web-inbox", InAppRegistration(channel="in_app"))

    # When the iPhone logs out
    removed = unregister_device(registry, endpoints, "user-42", "iphone")

    # Then the device and its endpoint are gone, the inbox stays
    assert removed is True
    assert registry.get("user-42", "iphone") is None
    assert endpoints.removed == [phone.endpoint_arn]
    assert [device.device_id for device in registry.devices_of("user-42")] == ["web-inbox"]


def test_unregistering_an_email_device_touches_no_endpoint():
    # Given a registered email device
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    register_device(
        registry, endpoints, "user-42", "laptop-mail", EmailRegistration(channel="email", address="ada@example.com")
    )

    # When it is unregistered
    removed = unregister_device(registry, endpoints, "user-42", "laptop-mail")

    # Then it is gone and no endpoint removal was attempted
    assert removed is True
    assert registry.devices == {}
    assert endpoints.removed == []


def test_unregistering_an_unknown_device_says_so():
    # Given a user with no such device
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()

    # When it is unregistered
    removed = unregister_device(registry, endpoints, "user-42", "never-registered")

    # Then nothing happened and the caller can answer 404
    assert removed is False
    assert endpoints.removed == []


def test_a_push_token_another_user_registered_takes_over_its_endpoint():
    # Given a phone whose token is registered to ada (SNS keeps one endpoint per token)
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    adas = register_device(registry, endpoints, "ada", "iphone", push("token-1"))

    # When grace signs in on that phone and registers the same token
    graces = register_device(registry, endpoints, "grace", "iphone", push("token-1"))

    # Then grace's device uses that endpoint, now carrying her id, and holds it; no second endpoint exists
    assert graces.endpoint_arn == adas.endpoint_arn
    assert endpoints.users[graces.endpoint_arn] == "grace"
    assert list(endpoints.endpoints) == [adas.endpoint_arn]
    assert registry.holders[graces.endpoint_arn] == ("grace", "iphone")


def test_a_push_device_marked_inactive_is_active_again_once_it_registers_again():
    # Given an iPhone whose endpoint SNS reported disabled, so Herald marked it inactive
    registry, endpoints = FakeDeviceRegistry(), FakePushEndpoints()
    first = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-1"))
    assert first.endpoint_arn is not None
    registry.mark_inactive(
        "user-42", "iphone", "EndpointDisabled: Endpoint is disabled", endpoint_arn=first.endpoint_arn
    )

    # When the app registers a fresh token
    again = register_device(registry, endpoints, "user-42", "iphone", push("apns-token-2"))

    # Then the device is active again and fan-out will include it
    stored = registry.get("user-42", "iphone")
    assert again.active and stored is not None and stored.active and stored.inactive_reason is None
