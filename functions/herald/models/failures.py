"""A delivery a provider did not take, and whether it is worth trying again."""

from __future__ import annotations


class DeliveryFailed(Exception):
    """A provider did not take the delivery. `permanent` failures are not retried; `device_gone`
    ones also mean the device will never take a message again."""

    def __init__(self, reason: str, permanent: bool = False, device_gone: bool = False, ambiguous: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent or device_gone
        self.device_gone = device_gone
        # The request may have reached the provider and been accepted: the answer was lost.
        self.ambiguous = ambiguous
