"""Handler of Herald's HTTPS API: routes only; the work happens in herald."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from herald.api_models import (
    DeviceList,
    DeviceRegistration,
    DeviceView,
    ErrorBody,
    ErrorField,
    NotificationAccepted,
    NotificationRequest,
    QueuesView,
)
from herald.channels import PushEndpoints
from herald.clients import client
from herald.devices import DeviceRegistry, DynamoDeviceRegistry
from herald.domain import ID_PATTERN, Channel, Platform
from herald.inbox import DynamoInbox, Inbox, InboxPage, InvalidCursor
from herald.observability import logger
from herald.queues import IntakeQueue, queue_depths
from herald.registration import PlatformNotConfigured, register_device, unregister_device
from herald.sending import accept_notification
from herald.settings import ApiSettings
from herald.status import DynamoStatusStore, NotificationRecord, StatusStore


@dataclass(frozen=True)
class Dependencies:
    settings: ApiSettings
    registry: DeviceRegistry
    endpoints: PushEndpoints
    status: StatusStore
    inbox: Inbox
    intake: IntakeQueue
    sqs: Any

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Dependencies:
        dynamodb, sqs = client("dynamodb"), client("sqs")
        return cls(
            settings=settings,
            registry=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            endpoints=PushEndpoints(
                client("sns"),
                {
                    Platform.APNS: settings.apns_platform_application_arn,
                    Platform.FCM: settings.fcm_platform_application_arn,
                },
            ),
            status=DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days),
            inbox=DynamoInbox(dynamodb, settings.inbox_table),
            intake=IntakeQueue(sqs, settings.intake_queue_url),
            sqs=sqs,
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(ApiSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


app = APIGatewayRestResolver(enable_validation=True)

UserId = Annotated[str, Path(pattern=ID_PATTERN, description="The user's id in your system.")]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="The device's id, chosen by the app.")]
NotificationId = Annotated[str, Path(pattern=ID_PATTERN)]


class UnknownResource(Exception):
    """The path names something Herald does not have: answered 404."""


def deps() -> Dependencies:
    dependencies: Dependencies = app.context["dependencies"]
    return dependencies


def error(status: int, message: str, field: str | None = None, errors: list[ErrorField] | None = None) -> Response[str]:
    """The JSON error body every 4xx of this API has: a message and the fields at fault."""
    if errors is None:
        errors = [ErrorField(field=field, message=message)] if field else []
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody(message=message, errors=errors).model_dump_json(),
    )


@app.exception_handler(RequestValidationError)
def invalid_request(exception: RequestValidationError) -> Response[str]:
    fields = []
    for detail in exception.errors():
        if detail.get("type") == "json_invalid":
            return error(400, "body is not valid JSON", "body")
        fields.append(ErrorField(field=_field_name(detail), message=detail.get("msg", "")))
    message = "invalid " + ", ".join(sorted({f.field for f in fields})) if fields else "invalid request"
    return error(422, message, errors=fields)


def _field_name(detail: dict[str, Any]) -> str:
    """The dotted name of the field at fault, without the location kind or a union's tag."""
    loc = [str(part) for part in detail.get("loc", ())]
    if detail.get("type") in {"union_tag_invalid", "union_tag_not_found"}:
        return str(detail.get("ctx", {}).get("discriminator", "channel")).strip("'")
    # Drop the location kind ("body", "path", "query") and a union's tag ("sms", ...).
    where = loc[1:] if loc and loc[0] in {"body", "path", "query", "header"} else loc
    if where and where[0] in {channel.value for channel in Channel}:
        where = where[1:]
    return ".".join(where) or (loc[0] if loc else "body")


@app.exception_handler(RequestUnsupportedContentType)
def unsupported_content_type(exception: RequestUnsupportedContentType) -> Response[str]:
    return error(415, "send the body as application/json", "content-type")


@app.exception_handler(PlatformNotConfigured)
def platform_not_configured(exception: PlatformNotConfigured) -> Response[str]:
    return error(422, str(exception), "platform")


@app.exception_handler(UnknownResource)
def unknown_resource(exception: UnknownResource) -> Response[str]:
    return error(404, str(exception))


@app.exception_handler(InvalidCursor)
def invalid_cursor(exception: InvalidCursor) -> Response[str]:
    return error(422, str(exception), "cursor")


@app.not_found
def unknown_route(exception: NotFoundError) -> Response[str]:
    return error(404, f"no route {app.current_event.http_method} {app.current_event.path}")


@app.put("/users/<user_id>/devices/<device_id>", summary="Register or update a device (login)")
def put_device(user_id: UserId, device_id: DeviceId, registration: Annotated[DeviceRegistration, Body()]) -> DeviceView:
    d = deps()
    device = register_device(d.registry, d.endpoints, user_id, device_id, registration)
    return DeviceView.of(device)


@app.delete(
    "/users/<user_id>/devices/<device_id>",
    summary="Unregister a device (logout)",
    responses={204: {"description": "Unregistered"}, 404: {"description": "Unknown device"}},
)
def delete_device(user_id: UserId, device_id: DeviceId) -> Response[str]:
    d = deps()
    if not unregister_device(d.registry, d.endpoints, user_id, device_id):
        raise UnknownResource(f"user {user_id} has no device {device_id}")
    return Response(status_code=204, body="")


@app.get("/users/<user_id>/devices", summary="The user's devices")
def list_devices(user_id: UserId) -> DeviceList:
    return DeviceList(devices=[DeviceView.of(device) for device in deps().registry.devices_of(user_id)])


@app.post(
    "/notifications",
    summary="Send a notification to users' devices",
    responses={
        202: {
            "description": "Accepted",
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/NotificationAccepted"}}},
        }
    },
)
def send_notification(request: Annotated[NotificationRequest, Body()]) -> Response[str]:
    d = deps()
    notification = accept_notification(request, d.status, d.intake)
    logger.info("notification accepted", notification_id=notification.notification_id, priority=request.priority.value)
    return Response(
        status_code=202,
        content_type=content_types.APPLICATION_JSON,
        body=NotificationAccepted(notification_id=notification.notification_id).model_dump_json(),
    )


@app.get("/notifications/<notification_id>", summary="Where a notification stands, device by device")
def get_notification(notification_id: NotificationId) -> NotificationRecord:
    record = deps().status.get(notification_id)
    if record is None:
        raise UnknownResource(f"no notification {notification_id}")
    return record


@app.get("/users/<user_id>/inbox", summary="The user's in-app notifications, newest first")
def list_inbox(
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> InboxPage:
    return deps().inbox.page(user_id, limit, cursor)


@app.get("/queues", summary="Messages waiting, in flight and dead-lettered, per priority")
def get_queues() -> QueuesView:
    d = deps()
    depths = queue_depths(d.sqs, d.settings)
    return QueuesView(**{priority.value: depth for priority, depth in depths.items()})


@app.get("/openapi.json", summary="This API's OpenAPI description", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document())


@lru_cache(maxsize=1)
def openapi_document() -> str:
    """Built once per container: the routes do not change while it lives."""
    return app.get_openapi_json_schema(title="Herald", version="1.0.0")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    app.append_context(dependencies=dependencies or default_dependencies())
    return app.resolve(event, context)
