"""What the providers received: emails, SMS and push messages, read back from the emulator."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import requests


@dataclass(frozen=True)
class SentEmail:
    source: str
    to: tuple[str, ...]
    subject: str
    body: str


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


class MotoProviderRecords:
    """moto keeps every 'sent' item; its server shows them at /moto-api/data.json."""

    def __init__(self, endpoint: str):
        self._url = f"{endpoint.rstrip('/')}/moto-api/data.json"

    def _data(self) -> dict[str, Any]:
        response = requests.get(self._url, timeout=10)
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
