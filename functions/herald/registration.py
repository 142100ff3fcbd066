"""Devices: register (login), unregister (logout), list."""

from __future__ import annotations

from herald.api_models import DeviceRegistration, PushRegistration
from herald.channels import PushEndpoints
from herald.devices import DeviceRegistry
from herald.domain import Channel, Device, now


class PlatformNotConfigured(Exception):
    """The deployment has no SNS platform application for this push platform."""


def register_device(
    registry: DeviceRegistry,
    endpoints: PushEndpoints,
    user_id: str,
    device_id: str,
    registration: DeviceRegistration,
) -> Device:
    existing = registry.get(user_id, device_id)
    at = now()
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
    registry.put(device)
    if existing and existing.endpoint_arn and existing.endpoint_arn != endpoint_arn:
        endpoints.remove(existing.endpoint_arn)
    return device


def unregister_device(registry: DeviceRegistry, endpoints: PushEndpoints, user_id: str, device_id: str) -> bool:
    existing = registry.get(user_id, device_id)
    if existing is None:
        return False
    registry.delete(user_id, device_id)
    if existing.endpoint_arn:
        endpoints.remove(existing.endpoint_arn)
    return True
