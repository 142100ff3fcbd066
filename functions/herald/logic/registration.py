"""Devices: register (login), unregister (logout), list."""

from __future__ import annotations

import re

from botocore.exceptions import ClientError

from herald.logic.ports import DeviceRegistry, PushEndpoints
from herald.models.api import DeviceRegistration, PushRegistration
from herald.models.domain import Channel, Device, now

# "Invalid parameter: Token Reason: Endpoint <arn> already exists with the same Token, but different attributes."
_TOKEN_TAKEN = re.compile(r"Endpoint (arn:\S+) already exists with the same Token")


def endpoint_holding_token(error: ClientError) -> str | None:
    """The endpoint that CreatePlatformEndpoint refused to duplicate, if that is why it failed."""
    details = error.response.get("Error", {})
    found = _TOKEN_TAKEN.search(str(details.get("Message", "")))
    return found.group(1) if details.get("Code") == "InvalidParameter" and found else None


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
        try:
            endpoint_arn = endpoints.register(platform, registration.address, user_id, previous)
        except ClientError as error:
            # The token already has an endpoint (the app was reinstalled, or another user signed in on
            # that phone): SNS names it in the error, and the way on is to take that endpoint over.
            holder = endpoint_holding_token(error)
            if holder is None:
                raise
            endpoint_arn = endpoints.register(platform, registration.address, user_id, holder)
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
