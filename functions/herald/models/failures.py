"""Failures, sorted: whether trying again can help, and what else they mean."""

from __future__ import annotations


class Failure(Exception):
    """Something Herald called did not do it. `permanent` ones are never retried (the same request
    fails the same way every time); `device_gone` ones also mean the device will never take a
    message again; `ambiguous` ones may have been done after all (the answer was lost)."""

    def __init__(self, reason: str, permanent: bool = False, device_gone: bool = False, ambiguous: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent or device_gone
        self.device_gone = device_gone
        self.ambiguous = ambiguous


class DeliveryFailed(Failure):
    """A channel did not deliver: raised by a sender for what it sees itself (no address, an opted-out number)."""


class AlreadyDelivered(Exception):
    """The provider already holds this delivery: an idempotent write (the inbox item, its key fixed) found it
    made by an earlier copy or attempt. Not a failure: the delivery was sent, once."""

    def __init__(self, provider_message_id: str):
        super().__init__(provider_message_id)
        self.provider_message_id = provider_message_id
