"""The channels a delivery goes out through: SES email, SNS SMS, SNS mobile push, in-app inbox."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from herald.logic.ports import Inbox
from herald.models.domain import DeliveryJob, Platform, Priority
from herald.models.failures import AlreadyDelivered, DeliveryFailed


class EmailSender:
    """SES SendEmail; with a configuration set, SES publishes the email's bounces and complaints to its topic."""

    def __init__(self, ses: Any, sender: str, configuration_set: str = ""):
        self._ses = ses
        self._sender = sender
        self._feedback = {"ConfigurationSetName": configuration_set} if configuration_set else {}

    def send(self, job: DeliveryJob) -> str:
        if not job.address:
            raise DeliveryFailed("device has no email address", permanent=True)
        body = {"Text": {"Data": job.body, "Charset": "UTF-8"}}
        if job.html:  # a template's email: HTML with the text part beside it (multipart/alternative)
            body["Html"] = {"Data": job.html, "Charset": "UTF-8"}
        response = self._ses.send_email(
            Source=self._sender,
            Destination={"ToAddresses": [job.address]},
            Message={"Subject": {"Data": job.title, "Charset": "UTF-8"}, "Body": body},
            **self._feedback,
        )
        return str(response["MessageId"])


OPTED_OUT = "OptedOut: the number opted out of SMS from this account (replied STOP)"


class SmsSender:
    """SNS Publish to a phone number, once SNS says the number has not opted out.

    SNS accepts a publish to an opted-out number and silently drops it, so Herald would never
    learn: asking first (CheckIfPhoneNumberIsOptedOut) lets the delivery fail saying why and the
    device go inactive, as a disabled push endpoint does.
    """

    def __init__(self, sns: Any):
        self._sns = sns

    def send(self, job: DeliveryJob) -> str:
        if not job.address:
            raise DeliveryFailed("device has no phone number", permanent=True)
        if self._sns.check_if_phone_number_is_opted_out(phoneNumber=job.address).get("isOptedOut"):
            raise DeliveryFailed(OPTED_OUT, device_gone=True)
        response = self._sns.publish(
            PhoneNumber=job.address,
            Message=f"{job.title}: {job.body}" if job.title else job.body,
            MessageAttributes={
                "AWS.SNS.SMS.SMSType": {
                    "DataType": "String",
                    "StringValue": "Transactional" if job.priority is Priority.HIGH else "Promotional",
                }
            },
        )
        return str(response["MessageId"])


class PushSender:
    def __init__(self, sns: Any):
        self._sns = sns

    def send(self, job: DeliveryJob) -> str:
        if not job.endpoint_arn:
            raise DeliveryFailed("push device has no platform endpoint", permanent=True)
        response = self._sns.publish(
            TargetArn=job.endpoint_arn,
            MessageStructure="json",
            Message=json.dumps(push_payload(job)),
        )
        return str(response["MessageId"])


def push_payload(job: DeliveryJob) -> dict[str, str]:
    """One message per platform, as SNS expects with MessageStructure=json."""
    apns = {"aps": {"alert": {"title": job.title, "body": job.body}}, **job.data}
    fcm = {"notification": {"title": job.title, "body": job.body}, "data": {k: str(v) for k, v in job.data.items()}}
    return {
        "default": job.body,
        "APNS": json.dumps(apns),
        "APNS_SANDBOX": json.dumps(apns),
        "GCM": json.dumps({"fcmV1Message": {"message": fcm}}),
    }


class InAppSender:
    def __init__(self, inbox: Inbox, expires_at: Callable[[], int]):
        self._inbox = inbox
        self._expires_at = expires_at

    def send(self, job: DeliveryJob) -> str:
        """The inbox item; AlreadyDelivered if an earlier copy of the delivery made it (it is left as it is)."""
        message_id = f"inbox:{job.user_id}:{job.notification_id}"
        if not self._inbox.add(job, self._expires_at()):
            raise AlreadyDelivered(message_id)
        return message_id


class SnsPushEndpoints:
    """Creates and updates the SNS platform endpoint behind a push device.

    SNS keeps one endpoint per token and platform application: CreatePlatformEndpoint answers a
    known token with its endpoint, or refuses it ("already exists with the same Token, but
    different attributes") when the attributes differ, as when another user registered it. Either
    way the endpoint is taken over: its token re-set, enabled, its user data naming the new user.
    """

    def __init__(self, sns: Any, applications: Mapping[Platform, str]):
        self._sns = sns
        self._applications = {platform: arn for platform, arn in applications.items() if arn}

    def supports(self, platform: Platform) -> bool:
        return platform in self._applications

    def register(self, platform: Platform, token: str, user_id: str, existing_arn: str | None) -> str:
        if existing_arn:
            try:
                self._take_over(existing_arn, token, user_id)
                return existing_arn
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "NotFound":
                    raise
        try:
            response = self._sns.create_platform_endpoint(
                PlatformApplicationArn=self._applications[platform], Token=token, CustomUserData=user_id
            )
            arn = str(response["EndpointArn"])
        except ClientError as error:
            holder = endpoint_holding_token(error)
            if holder is None:
                raise
            arn = holder
        # A known token's endpoint may be disabled, or carry another user's data: make it this device's.
        self._take_over(arn, token, user_id)
        return arn

    def remove(self, endpoint_arn: str) -> None:
        self._sns.delete_endpoint(EndpointArn=endpoint_arn)

    def _take_over(self, endpoint_arn: str, token: str, user_id: str) -> None:
        self._sns.set_endpoint_attributes(
            EndpointArn=endpoint_arn, Attributes={"Token": token, "Enabled": "true", "CustomUserData": user_id}
        )


# "Invalid parameter: Token Reason: Endpoint <arn> already exists with the same Token, but different attributes."
_TOKEN_TAKEN = re.compile(r"Endpoint (arn:\S+) already exists with the same Token")


def endpoint_holding_token(error: ClientError) -> str | None:
    """The endpoint that CreatePlatformEndpoint refused to duplicate, if that is why it failed."""
    details = error.response.get("Error", {})
    found = _TOKEN_TAKEN.search(str(details.get("Message", "")))
    return found.group(1) if details.get("Code") == "InvalidParameter" and found else None
