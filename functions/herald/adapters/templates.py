"""Templates in DynamoDB (one item each), and each templated notification's rendering (StatusTable)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from herald.models.api import MAX_SCHEDULE_DAYS
from herald.models.domain import now
from herald.models.templates import Rendering, TemplateDocument, TemplateView

CONTENT_SK = "content"
CACHED_RENDERINGS = 64


def content_key(notification_id: str) -> str:
    return f"{notification_id}#content"


class DynamoTemplateStore:
    def __init__(self, dynamodb: Any, table: str):
        self._dynamodb = dynamodb
        self._table = table

    def get(self, template_id: str) -> TemplateView | None:
        item = self._dynamodb.get_item(
            TableName=self._table, Key={"template_id": {"S": template_id}}, ConsistentRead=True
        ).get("Item")
        if not item:
            return None
        return TemplateView.model_validate_json(item["template"]["S"])

    def put(self, template_id: str, document: TemplateDocument) -> TemplateView:
        view = TemplateView(template_id=template_id, updated_at=now(), **document.model_dump())
        self._dynamodb.put_item(
            TableName=self._table,
            Item={"template_id": {"S": template_id}, "template": {"S": view.model_dump_json(exclude_none=True)}},
        )
        return view

    def delete(self, template_id: str) -> bool:
        response = self._dynamodb.delete_item(
            TableName=self._table, Key={"template_id": {"S": template_id}}, ReturnValues="ALL_OLD"
        )
        return "Attributes" in response


class DynamoRenderedContent:
    """A notification's rendering, in StatusTable under a key of its own ("<id>#content": ids have no '#'),
    so it expires like the status, and reading a notification's status (a Query of its partition) never
    reads the rendering along (up to 300 KB).

    Written once at accept time; read by the deliver function once per container and notification
    (a small cache), however many of its deliveries the container sends.
    """

    def __init__(self, dynamodb: Any, table: str, retention_days: int = 30):
        self._dynamodb = dynamodb
        self._table = table
        # A scheduled notification's rendering must outlive its wait as well as the status retention.
        self._retention_seconds = (retention_days + MAX_SCHEDULE_DAYS) * 86400
        self._cache: OrderedDict[str, Rendering] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, notification_id: str, rendering: Rendering) -> None:
        self._dynamodb.put_item(
            TableName=self._table,
            Item={
                "notification_id": {"S": content_key(notification_id)},
                "sk": {"S": CONTENT_SK},
                "rendering": {"S": rendering.model_dump_json(exclude_none=True)},
                "expires_at": {"N": str(int(now().timestamp()) + self._retention_seconds)},
            },
        )

    def get(self, notification_id: str) -> Rendering | None:
        with self._lock:
            if notification_id in self._cache:
                self._cache.move_to_end(notification_id)
                return self._cache[notification_id]
        item = self._dynamodb.get_item(
            TableName=self._table,
            Key={"notification_id": {"S": content_key(notification_id)}, "sk": {"S": CONTENT_SK}},
            ConsistentRead=True,
        ).get("Item")
        if not item:
            return None
        rendering = Rendering.model_validate_json(item["rendering"]["S"])
        with self._lock:
            self._cache[notification_id] = rendering
            while len(self._cache) > CACHED_RENDERINGS:
                self._cache.popitem(last=False)
        return rendering
