"""The channels a delivery goes out through: SES email, SNS SMS, SNS mobile push, in-app inbox."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from botocore.exceptions import ClientError

from herald.logic.ports import Inbox
from herald.models.domain import DeliveryJob, Platform, Priority
from herald.models.failures import DeliveryFailed


class EmailSender:
    def __init__(self, ses: Any, sender: str):
        self._ses = ses
        self._sender = sender

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
        )
        return str(response["MessageId"])


class SmsSender:
    def __init__(self, sns: Any):
        self._sns = sns

    def send(self, job: DeliveryJob) -> str:
        if not job.address:
            raise DeliveryFailed("device has no phone number", permanent=True)
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
        self._inbox.add(job, self._expires_at())
        return f"inbox:{job.user_id}:{job.notification_id}"


class SnsPushEndpoints:
    """Creates and updates the SNS platform endpoint behind a push device."""

    def __init__(self, sns: Any, applications: Mapping[Platform, str]):
        self._sns = sns
        self._applications = {platform: arn for platform, arn in applications.items() if arn}

    def supports(self, platform: Platform) -> bool:
        return platform in self._applications

    def register(self, platform: Platform, token: str, user_id: str, existing_arn: str | None) -> str:
        if existing_arn:
            try:
                self._sns.set_endpoint_attributes(
                    EndpointArn=existing_arn, Attributes={"Token": token, "Enabled": "true"}
                )
                return existing_arn
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "NotFound":
                    raise
        response = self._sns.create_platform_endpoint(
            PlatformApplicationArn=self._applications[platform], Token=token, CustomUserData=user_id
        )
        arn = str(response["EndpointArn"])
        # CreatePlatformEndpoint returns the existing endpoint for a known token: make sure it is on.
        self._sns.set_endpoint_attributes(EndpointArn=arn, Attributes={"Enabled": "true"})
        return arn

    def remove(self, endpoint_arn: str) -> None:
        self._sns.delete_endpoint(EndpointArn=endpoint_arn)
