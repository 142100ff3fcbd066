"""Devices: register (login), unregister (logout), list; a push token belongs to one device at a time."""

from __future__ import annotations

from herald.logic.ports import DeviceRegistry, PushEndpoints
from herald.models.api import DeviceRegistration, PushRegistration
from herald.models.domain import Channel, Device, DeviceKey, now

MOVED_TO_ANOTHER_USER = "its push token was registered by another user; it gets no pushes until it registers again"


MOVED_MEANWHILE = (
    "its push token was registered for another device meanwhile; it gets no pushes until it registers again"
)


def moved_to_device(device_id: str) -> str:
    return f"its push token was registered again as device {device_id}; it gets no pushes until it registers again"


def _moved_reason(other: DeviceKey, me: DeviceKey) -> str:
    if other == me:
        return MOVED_MEANWHILE
    return moved_to_device(me.device_id) if other.user_id == me.user_id else MOVED_TO_ANOTHER_USER


class PlatformNotConfigured(Exception):
    """The deployment has no SNS platform application for this push platform."""


def register_device(
    registry: DeviceRegistry,
    endpoints: PushEndpoints,
    user_id: str,
    device_id: str,
    registration: DeviceRegistration,
) -> Device:
    """Stores the device; a push device gets the token's platform endpoint, and becomes its one holder.

    SNS has one endpoint per token and platform application, so the same phone registered by
    another user (a shared or resold phone, a logout that never reached Herald) lands on the same
    endpoint. The registration that takes the endpoint last holds it: every other device on it is
    deactivated, saying why, and loses the endpoint, so a later logout there cannot delete it.
    """
    existing = registry.get(user_id, device_id)
    at = now()
    me = DeviceKey(user_id, device_id)
    endpoint_arn = None
    platform = None
    if isinstance(registration, PushRegistration):
        platform = registration.platform
        if not endpoints.supports(platform):
            raise PlatformNotConfigured(f"push platform {platform.value} is not configured on this deployment")
        # An endpoint belongs to one platform application: a device that changed platform needs a new one.
        previous = existing.endpoint_arn if existing and existing.platform is platform else None
        endpoint_arn = endpoints.register(platform, registration.address, user_id, previous)
    device = Device(
        user_id=user_id,
        device_id=device_id,
        channel=Channel(registration.channel),
        address=getattr(registration, "address", None),
        platform=platform,
        endpoint_arn=endpoint_arn,
        created_at=existing.created_at if existing else at,
        updated_at=at,
    )
    # Holder first, device second: a registration that swaps in after this one deactivates this device
    # once it is written, or this device finds itself no longer the holder below.
    replaced = registry.take_endpoint(endpoint_arn, me) if endpoint_arn else None
    registry.put(device)
    if endpoint_arn:
        others = set(registry.devices_with_endpoint(endpoint_arn)) | ({replaced} if replaced else set())
        for other in sorted(others | {me}):  # me too: a registration that swapped in meanwhile holds it now
            registry.move_off_endpoint(endpoint_arn, other, _moved_reason(other, me))
    if existing and existing.endpoint_arn and existing.endpoint_arn != endpoint_arn:
        release(registry, endpoints, existing.endpoint_arn, me)
    return device


def unregister_device(registry: DeviceRegistry, endpoints: PushEndpoints, user_id: str, device_id: str) -> bool:
    existing = registry.get(user_id, device_id)
    if existing is None:
        return False
    registry.delete(user_id, device_id)
    if existing.endpoint_arn:
        release(registry, endpoints, existing.endpoint_arn, DeviceKey(user_id, device_id))
    return True


def release(registry: DeviceRegistry, endpoints: PushEndpoints, endpoint_arn: str, me: DeviceKey) -> bool:
    """Deletes a push endpoint `me` no longer uses, unless another device holds it or points at it."""
    if not registry.release_endpoint(endpoint_arn, me):
        return False
    if any(other != me for other in registry.devices_with_endpoint(endpoint_arn)):
        return False
    endpoints.remove(endpoint_arn)
    return True
