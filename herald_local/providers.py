"""What the providers received: emails, SMS and push messages, read back from whichever emulator serves them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import requests

from herald_local.endpoints import emulator_at


@dataclass(frozen=True)
class SentEmail:
    source: str
    to: tuple[str, ...]
    subject: str
    body: str  # the text part (moto keeps only one part: the HTML one when there is one)
    html: str | None = None  # the HTML part, where the emulator keeps both (LocalStack)


@dataclass(frozen=True)
class SentSms:
    phone_number: str
    message: str


@dataclass(frozen=True)
class SentPush:
    endpoint_arn: str
    token: str
    message: dict[str, Any]  # the per-platform payloads, as published with MessageStructure=json


class ProviderRecords(Protocol):
    def emails(self) -> list[SentEmail]: ...
    def sms(self) -> list[SentSms]: ...
    def pushes(self) -> list[SentPush]: ...


DATA_TIMEOUT_SECONDS = 300


class MotoProviderRecords:
    """moto keeps every 'sent' item; its server shows them at /moto-api/data.json."""

    def __init__(self, endpoint: str):
        self._url = f"{endpoint.rstrip('/')}/moto-api/data.json"

    def _data(self) -> dict[str, Any]:
        # moto serialises its whole state for this (every table's items, every queue's messages): after a 5,000-
        # delivery chaos run that took longer than 10 s, and the run ended before its ledger was read
        response = requests.get(self._url, timeout=DATA_TIMEOUT_SECONDS)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def emails(self) -> list[SentEmail]:
        return [
            SentEmail(m["source"], tuple(m["destinations"].get("ToAddresses", [])), m["subject"], m["body"])
            for m in self._data().get("ses", {}).get("Message", [])
        ]

    def sms(self) -> list[SentSms]:
        return [SentSms(m["phone_number"], m["message"]) for m in self._data().get("sns", {}).get("SMS", [])]

    def pushes(self) -> list[SentPush]:
        sent = []
        for endpoint in self._data().get("sns", {}).get("PlatformEndpoint", []):
            for message in endpoint.get("messages", {}).values():
                sent.append(SentPush(endpoint["arn"], endpoint["token"], json.loads(message)))
        return sent


class LocalStackProviderRecords:
    """LocalStack keeps what it 'sent' at /_aws/ses, /_aws/sns/sms-messages and /_aws/sns/platform-endpoint-messages.

    A push record names its endpoint and holds only the payload of that endpoint's platform; the
    token is read from SNS (GetEndpointAttributes) while the endpoint exists.
    """

    def __init__(self, endpoint: str, region: str | None = None):
        self._base = endpoint.rstrip("/")
        self._region = region or os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
        self._sns: Any = None

    def _get(self, path: str, **params: str) -> dict[str, Any]:
        response = requests.get(f"{self._base}{path}", params=params, timeout=10)
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    def emails(self) -> list[SentEmail]:
        return [
            SentEmail(
                m["Source"],
                tuple(m.get("Destination", {}).get("ToAddresses", [])),
                m.get("Subject") or "",
                (m.get("Body") or {}).get("text_part") or (m.get("Body") or {}).get("html_part") or "",
                (m.get("Body") or {}).get("html_part") or None,
            )
            for m in self._get("/_aws/ses").get("messages", [])
            if m.get("Region", self._region) == self._region
        ]

    def sms(self) -> list[SentSms]:
        by_number = self._get("/_aws/sns/sms-messages", region=self._region).get("sms_messages", {})
        return [SentSms(m["PhoneNumber"], m["Message"]) for messages in by_number.values() for m in messages]

    def pushes(self) -> list[SentPush]:
        by_endpoint = self._get("/_aws/sns/platform-endpoint-messages", region=self._region)
        sent = []
        for arn, messages in by_endpoint.get("platform_endpoint_messages", {}).items():
            platform = arn.split(":endpoint/", 1)[1].split("/", 1)[0]  # ...:endpoint/APNS/app/id
            for m in messages:
                payload: Any = m["Message"]
                if m.get("MessageStructure") == "json":
                    payload = {platform: json.loads(payload)}  # that platform's part, JSON-encoded once more
                else:
                    payload = {"default": payload}
                sent.append(SentPush(arn, self._token(arn), payload))
        return sent

    def _token(self, endpoint_arn: str) -> str:
        if self._sns is None:
            import boto3

            self._sns = boto3.session.Session().client("sns", endpoint_url=self._base, region_name=self._region)
        try:
            token: str = self._sns.get_endpoint_attributes(EndpointArn=endpoint_arn)["Attributes"].get("Token", "")
        except Exception:  # deleted since: the record stays, its token is gone
            return ""
        return token


class SplitProviderRecords:
    """Email from one emulator, SMS and push from another: each read where its service runs."""

    def __init__(self, email: ProviderRecords, sns: ProviderRecords):
        self._email = email
        self._sns = sns

    def emails(self) -> list[SentEmail]:
        return self._email.emails()

    def sms(self) -> list[SentSms]:
        return self._sns.sms()

    def pushes(self) -> list[SentPush]:
        return self._sns.pushes()


def records_at(endpoint: str) -> ProviderRecords:
    """The reader for the emulator answering at `endpoint`."""
    emulator = emulator_at(endpoint)
    if emulator == "localstack":
        return LocalStackProviderRecords(endpoint)
    if emulator == "moto":
        return MotoProviderRecords(endpoint)
    raise ValueError(f"{endpoint} is neither moto nor LocalStack: no way to read back what its providers sent")


def provider_records(endpoints: Mapping[str, str | None]) -> ProviderRecords:
    """What SES and SNS received, read from whichever emulator serves each (as the local stack set them)."""
    ses, sns = endpoints.get("ses"), endpoints.get("sns")
    if not ses or not sns:
        raise ValueError("SES and SNS need an endpoint to read back from")
    return records_at(ses) if ses == sns else SplitProviderRecords(records_at(ses), records_at(sns))
