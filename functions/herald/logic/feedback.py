"""Feedback from providers about addresses: a device whose address hard-bounces or complains goes inactive.

Herald keeps sending to an address only while it can take mail: a hard (Permanent) bounce means it
does not exist, and a complaint means its owner marked Herald's mail as spam. Sending on to either
harms the sender's reputation, so every email device with that address, whoever registered it, is
marked inactive with the reason; fan-out skips it until it registers again. A soft (Transient or
Undetermined) bounce changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from herald.logic.ports import DeviceRegistry
from herald.models.domain import Channel, DeviceKey
from herald.models.feedback import EmailFeedback


@dataclass
class FeedbackResult:
    addresses: list[str] = field(default_factory=list)  # the addresses SES reported dead
    inactive: list[DeviceKey] = field(default_factory=list)  # the devices marked inactive for them


def dead_addresses(feedback: EmailFeedback) -> list[tuple[str, str]]:
    """(address, reason) for each recipient this event says Herald must stop mailing."""
    if feedback.kind == "Bounce" and feedback.bounce and feedback.bounce.bounce_type == "Permanent":
        bounce = feedback.bounce
        kind = f"hard bounce ({bounce.bounce_sub_type})" if bounce.bounce_sub_type else "hard bounce"
        return [
            (r.email_address, f"SES reported a {kind}" + (f": {r.diagnostic_code}" if r.diagnostic_code else ""))
            for r in bounce.bounced_recipients
        ]
    if feedback.kind == "Complaint" and feedback.complaint:
        complaint = feedback.complaint
        kind = f" ({complaint.complaint_feedback_type})" if complaint.complaint_feedback_type else ""
        return [(r.email_address, f"SES reported a complaint{kind}") for r in complaint.complained_recipients]
    return []


def apply_email_feedback(feedback: EmailFeedback, registry: DeviceRegistry) -> FeedbackResult:
    """Marks every email device with a reported address inactive, if it still has that address."""
    result = FeedbackResult()
    for address, reason in dead_addresses(feedback):
        result.addresses.append(address)
        for key in registry.devices_with_contact(Channel.EMAIL, address):
            device = registry.get(*key)
            # The index lags a moment: the device may have changed address or been removed since.
            if device is None or device.channel is not Channel.EMAIL or device.address is None:
                continue
            if device.address.lower() != address.lower():
                continue
            if registry.mark_inactive(key.user_id, key.device_id, reason, address=device.address):
                result.inactive.append(key)
    return result
