"""Handler of Herald's HTTPS API: routes only; the work happens in herald."""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.middlewares import NextMiddleware
from aws_lambda_powertools.event_handler.openapi.exceptions import (
    RequestUnsupportedContentType,
    RequestValidationError,
)
from aws_lambda_powertools.event_handler.openapi.params import Body, Header, Path, Query
from aws_lambda_powertools.utilities.typing import LambdaContext

from api.messages import in_words, pattern_error
from herald.adapters.channels import SnsPushEndpoints
from herald.adapters.clients import client
from herald.adapters.devices import DynamoDeviceRegistry
from herald.adapters.history import DynamoHistory
from herald.adapters.holds import ScheduleQueue
from herald.adapters.idempotency import DynamoIdempotencyStore
from herald.adapters.inbox import DynamoInbox, InvalidCursor, UnknownItem
from herald.adapters.profiles import DynamoProfileStore
from herald.adapters.queues import IntakeLanes, feedback_depth, intake_depths, queue_depths, schedule_depth
from herald.adapters.status import DynamoStatusStore, HistoryPages
from herald.adapters.status_views import DynamoStatusReader
from herald.adapters.templates import DynamoRenderedContent, DynamoTemplateStore
from herald.adapters.topics import DynamoSubscribers
from herald.logic.idempotency import IdempotentRequests, KeyReusedWithAnotherRequest, RequestInProgress, scoped_key
from herald.logic.ports import (
    DeviceRegistry,
    History,
    Holds,
    Inbox,
    InboxReadState,
    Intake,
    ProfileStore,
    PushEndpoints,
    StatusReader,
    StatusStore,
    Subscribers,
)
from herald.logic.preferences import RequiredCategoryOptOut, check_preferences
from herald.logic.registration import PlatformNotConfigured, register_device, unregister_device
from herald.logic.sending import accept_notification, accept_once
from herald.logic.templates import TemplateProblem, Templating, check_template
from herald.models.api import (
    MAX_REQUEST_BYTES,
    DeviceList,
    DeviceRegistration,
    DeviceView,
    ErrorBody,
    ErrorField,
    IntakeView,
    NotificationAccepted,
    NotificationRequest,
    QueuesView,
)
from herald.models.domain import ID_PATTERN, Channel, Platform, Priority
from herald.models.idempotency import IDEMPOTENCY_HEADER, KEY_PATTERN
from herald.models.inbox import (
    ITEM_ID_PATTERN,
    MAX_MARKED_PER_CALL,
    HistoryPage,
    InboxItem,
    InboxPage,
    MarkedRead,
    ReadState,
    UnreadCount,
)
from herald.models.json_body import body_problems
from herald.models.preferences import Preferences, PreferencesView
from herald.models.status import Cancellation, DeliveryPage, NotificationRecord
from herald.models.templates import TEMPLATE_ID_PATTERN, TemplateDocument, TemplateView
from herald.models.topics import SubscriberPage, Subscription
from herald.observability import inject_lambda_context, logger
from herald.settings import ApiSettings

if TYPE_CHECKING:
    from aws_lambda_powertools.event_handler.openapi.types import OpenAPIResponse


@dataclass(frozen=True)
class Dependencies:
    settings: ApiSettings
    registry: DeviceRegistry
    endpoints: PushEndpoints
    status: StatusStore
    reader: StatusReader
    subscribers: Subscribers
    inbox: Inbox
    intake: Intake
    idempotency: IdempotentRequests
    sqs: Any
    # Preferences, templates, schedules, read state, history: None where the settings name no table or queue
    profiles: ProfileStore | None = None
    templating: Templating | None = None
    holds: Holds | None = None
    read_state: InboxReadState | None = None
    history: History | None = None
    required_categories: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: ApiSettings) -> Dependencies:
        dynamodb, sqs = client("dynamodb"), client("sqs")
        inbox = DynamoInbox(dynamodb, settings.inbox_table)
        pages_in_history = HistoryPages(dynamodb, settings.history_table)
        status = DynamoStatusStore(dynamodb, settings.status_table, settings.status_retention_days, pages_in_history)
        return cls(
            settings=settings,
            registry=DynamoDeviceRegistry(dynamodb, settings.devices_table),
            endpoints=SnsPushEndpoints(
                client("sns"),
                {
                    Platform.APNS: settings.apns_platform_application_arn,
                    Platform.FCM: settings.fcm_platform_application_arn,
                },
            ),
            status=status,
            reader=DynamoStatusReader(dynamodb, settings.status_table, inbox=inbox, history=pages_in_history),
            subscribers=DynamoSubscribers(dynamodb, settings.subscribers_table),
            inbox=inbox,
            intake=IntakeLanes(sqs, {priority: settings.intake_queue_url(priority) for priority in Priority}),
            idempotency=IdempotentRequests(DynamoIdempotencyStore(dynamodb, settings.idempotency_table)),
            sqs=sqs,
            profiles=DynamoProfileStore(dynamodb, settings.preferences_table) if settings.preferences_table else None,
            templating=Templating(
                DynamoTemplateStore(dynamodb, settings.templates_table),
                DynamoRenderedContent(dynamodb, settings.status_table, settings.status_retention_days),
            )
            if settings.templates_table
            else None,
            holds=ScheduleQueue(sqs, settings.schedule_queue_url) if settings.schedule_queue_url else None,
            read_state=inbox,
            history=DynamoHistory(dynamodb, settings.history_table, status.expires_at)
            if settings.history_table
            else None,
            required_categories=settings.required(),
        )


def dependencies_from(environ: Mapping[str, str]) -> Dependencies:
    """One container's dependencies, from the environment the template gives this function."""
    return Dependencies.from_settings(ApiSettings.from_environment(environ))


@lru_cache(maxsize=1)
def default_dependencies() -> Dependencies:
    return dependencies_from(os.environ)


app = APIGatewayRestResolver(enable_validation=True)
T = TypeVar("T")

UserId = Annotated[str, Path(pattern=ID_PATTERN, description="The user's id in your system.")]
DeviceId = Annotated[str, Path(pattern=ID_PATTERN, description="The device's id, chosen by the app.")]
NotificationId = Annotated[str, Path(pattern=ID_PATTERN)]
Topic = Annotated[str, Path(pattern=ID_PATTERN, description="The topic's name, chosen by you.")]
Limit = Annotated[int, Query(ge=1, le=100)]
Cursor = Annotated[str | None, Query(max_length=2048, description="The previous page's `next_cursor`.")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        pattern=KEY_PATTERN,
        description=(
            "Optional, 1-255 printable ASCII characters without spaces, unique per request you mean."
            " A repeat within 24 hours gets the first answer (same status and notification_id) and creates"
            " nothing; the same key with a different body gets 422; a repeat while the first is still being"
            " processed gets 409 with Retry-After. Keys are scoped to the API key."
        ),
    ),
]
# Callers without an API key id (no usage plan in front of the function) share one key space.
NO_CALLER = "no-api-key"

_ERRORS = {
    400: "The body is not valid JSON (`errors` names `body`, or each field holding NaN or Infinity).",
    403: "API Gateway: missing or wrong `x-api-key`.",
    404: "Not found.",
    409: f"A request with this {IDEMPOTENCY_HEADER} is still being processed: retry after `Retry-After` seconds.",
    413: f"The body is over {MAX_REQUEST_BYTES} bytes.",
    415: "The body was not sent as application/json.",
    422: "Invalid input: `errors` names each field at fault.",
    429: "API Gateway: over the usage plan's rate.",
}
_ALWAYS = (403, 422, 429)  # every route: the key, its path or query, the throttle
_WITH_BODY = (400, 413, 415)


def documented(
    success: int, description: str, *errors: int, content: bool = True, notes: Mapping[int, str] | None = None
) -> dict[int, OpenAPIResponse]:
    """A route's responses for the OpenAPI document: its success, and each 4xx it can give with ErrorBody
    (`notes` says what a status means on this route, where it differs from the usual)."""
    responses: dict[int, OpenAPIResponse] = {success: {"description": description}}
    if not content:
        responses[success]["content"] = {}
    for status in sorted({*_ALWAYS, *errors}):
        response: OpenAPIResponse = {
            "description": (notes or {}).get(status, _ERRORS[status]),
            "content": {content_types.APPLICATION_JSON: {"model": ErrorBody}},
        }
        if status == 409 and not (notes and 409 in notes):
            response["headers"] = {
                "Retry-After": {"description": "Seconds to wait before repeating.", "schema": {"type": "integer"}}
            }
        responses[status] = response
    return responses


class UnknownResource(Exception):
    """The path names something Herald does not have: answered 404."""


def deps() -> Dependencies:
    dependencies: Dependencies = app.context["dependencies"]
    return dependencies


def error(
    status: int,
    message: str,
    field: str | None = None,
    errors: list[ErrorField] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[str]:
    """The JSON error body every 4xx of this API has: a message and the fields at fault."""
    if errors is None:
        errors = [ErrorField(field=field, message=message)] if field else []
    return Response(
        status_code=status,
        content_type=content_types.APPLICATION_JSON,
        body=ErrorBody(message=message, errors=errors).model_dump_json(exclude_none=True),
        headers=headers,
    )


@app.exception_handler(RequestValidationError)
def invalid_request(exception: RequestValidationError) -> Response[str]:
    fields = []
    for detail in exception.errors():
        if detail.get("type") == "json_invalid":
            return error(400, "body is not valid JSON", "body")
        words, details = in_words(detail)
        fields.append(ErrorField(field=_field_name(detail), message=words, details=details))
    message = "invalid " + ", ".join(sorted({f.field for f in fields})) if fields else "invalid request"
    return error(422, message, errors=fields)


def _field_name(detail: dict[str, Any]) -> str:
    """The dotted name of the field at fault, without the location kind or a union's tag."""
    loc = [str(part) for part in detail.get("loc", ())]
    if detail.get("type") in {"union_tag_invalid", "union_tag_not_found"}:
        return str(detail.get("ctx", {}).get("discriminator", "channel")).strip("'")
    if loc[:1] == ["header"] and len(loc) == 2:
        return _HEADERS.get(loc[1], loc[1])
    # Drop the location kind ("body", "path", "query") and a union's tag ("sms", ...).
    where = loc[1:] if loc and loc[0] in {"body", "path", "query"} else loc
    if where and where[0] in {channel.value for channel in Channel}:
        where = where[1:]
    return ".".join(where) or (loc[0] if loc else "body")


_HEADERS = {IDEMPOTENCY_HEADER.lower(): IDEMPOTENCY_HEADER}  # Powertools reports header names lowercased


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


@app.exception_handler(TemplateProblem)
def template_problem(exception: TemplateProblem) -> Response[str]:
    return error(422, exception.message, exception.field)


@app.exception_handler(RequiredCategoryOptOut)
def required_category(exception: RequiredCategoryOptOut) -> Response[str]:
    return error(422, str(exception), exception.field)


@app.exception_handler(UnknownItem)
def unknown_item(exception: UnknownItem) -> Response[str]:
    return error(404, str(exception))


@app.exception_handler(KeyReusedWithAnotherRequest)
def key_reused(exception: KeyReusedWithAnotherRequest) -> Response[str]:
    return error(422, str(exception), IDEMPOTENCY_HEADER)


@app.exception_handler(RequestInProgress)
def request_in_progress(exception: RequestInProgress) -> Response[str]:
    return error(409, str(exception), IDEMPOTENCY_HEADER, headers={"Retry-After": str(exception.retry_after)})


@app.not_found
def unknown_route(exception: NotFoundError) -> Response[str]:
    # API Gateway routed it with path parameters the resolver's own path syntax refuses (non-ASCII, say):
    # those are ids outside their pattern, so say which.
    invalid = sorted(
        name for name, value in (app.current_event.path_parameters or {}).items() if not re.fullmatch(ID_PATTERN, value)
    )
    if invalid:
        words, details = pattern_error(ID_PATTERN)
        errors = [ErrorField(field=name, message=words, details=details) for name in invalid]
        return error(422, "invalid " + ", ".join(invalid), errors=errors)
    return error(404, f"no route {app.current_event.http_method} {app.current_event.path}")


# The query parameters each route reads; any other is refused like an unknown body field.
QUERY_PARAMETERS = {
    ("GET", "/users/{user_id}/inbox"): {"limit", "cursor"},
    ("GET", "/notifications/{notification_id}/deliveries"): {"limit", "cursor"},
    ("GET", "/topics/{topic}/subscribers"): {"limit", "cursor"},
    ("GET", "/users/{user_id}/notifications"): {"limit", "cursor"},
}


def refuse_unknown_query_parameters(resolver: APIGatewayRestResolver, next_middleware: NextMiddleware) -> Response[Any]:
    known = QUERY_PARAMETERS.get((resolver.request.method, resolver.request.route), set())
    unknown = sorted(set(resolver.current_event.query_string_parameters or {}) - known)
    if unknown:
        errors = [ErrorField(field=name, message="not a query parameter of this route") for name in unknown]
        return error(422, "unknown query parameter " + ", ".join(unknown), errors=errors)
    return next_middleware(resolver)


app.use(middlewares=[refuse_unknown_query_parameters])


@app.put(
    "/users/<user_id>/devices/<device_id>",
    summary="Register or update a device (login)",
    responses=documented(200, "The device as stored", *_WITH_BODY),
)
def put_device(user_id: UserId, device_id: DeviceId, registration: Annotated[DeviceRegistration, Body()]) -> DeviceView:
    d = deps()
    device = register_device(d.registry, d.endpoints, user_id, device_id, registration)
    return DeviceView.of(device)


@app.delete(
    "/users/<user_id>/devices/<device_id>",
    summary="Unregister a device (logout)",
    responses=documented(204, "Unregistered", 404, content=False),
)
def delete_device(user_id: UserId, device_id: DeviceId) -> Response[str]:
    d = deps()
    if not unregister_device(d.registry, d.endpoints, user_id, device_id):
        raise UnknownResource(f"user {user_id} has no device {device_id}")
    return Response(status_code=204, body="")


@app.get("/users/<user_id>/devices", summary="The user's devices", responses=documented(200, "The user's devices"))
def list_devices(user_id: UserId) -> DeviceList:
    return DeviceList(devices=[DeviceView.of(device) for device in deps().registry.devices_of(user_id)])


@app.post(
    "/notifications",
    summary="Send a notification to users' devices",
    responses={
        **documented(202, "Accepted: recorded and queued", *_WITH_BODY, 409),
        202: {
            "description": "Accepted: recorded and queued (or, for a repeated Idempotency-Key, the first answer)",
            "content": {content_types.APPLICATION_JSON: {"model": NotificationAccepted}},
        },
    },
)
def send_notification(
    request: Annotated[NotificationRequest, Body()], idempotency_key: IdempotencyKey = None
) -> Response[str]:
    d = deps()
    if idempotency_key is None:
        notification = accept_notification(request, d.status, d.intake, None, d.templating, d.holds)
        status_code, body = 202, NotificationAccepted(notification_id=notification.notification_id).model_dump_json()
    else:
        caller = app.current_event.request_context.identity.api_key_id or NO_CALLER
        lease = app.lambda_context.get_remaining_time_in_millis() / 1000
        key = scoped_key(caller, idempotency_key)
        answer = accept_once(request, key, d.status, d.intake, d.idempotency, lease, d.templating, d.holds)
        status_code, body = answer.status_code, answer.body
    accepted = NotificationAccepted.model_validate_json(body)
    logger.info("notification accepted", notification_id=accepted.notification_id, priority=request.priority.value)
    return Response(status_code=status_code, content_type=content_types.APPLICATION_JSON, body=body)


@app.get(
    "/notifications/<notification_id>",
    summary="Where a notification stands, device by device",
    responses=documented(200, "The notification's status", 404),
)
def get_notification(notification_id: NotificationId) -> NotificationRecord:
    record = deps().reader.get(notification_id)
    if record is None:
        raise UnknownResource(f"no notification {notification_id}")
    return record


@app.get(
    "/notifications/<notification_id>/deliveries",
    summary="A notification's deliveries, a page at a time, in the order fan-out planned them",
    description=(
        "While a broadcast is still fanning out, a page stops at the first fan-out page not finished yet;"
        " its `next_cursor` resumes there."
    ),
    responses=documented(200, "One page of deliveries", 404),
)
def list_deliveries(notification_id: NotificationId, limit: Limit = 100, cursor: Cursor = None) -> DeliveryPage:
    page = deps().reader.deliveries(notification_id, limit, cursor)
    if page is None:
        raise UnknownResource(f"no notification {notification_id}")
    return page


@app.put(
    "/topics/<topic>/subscribers/<user_id>",
    summary="Subscribe a user to a topic (again: no change)",
    responses=documented(200, "The subscription"),
)
def subscribe(topic: Topic, user_id: UserId) -> Subscription:
    return deps().subscribers.subscribe(topic, user_id)


@app.delete(
    "/topics/<topic>/subscribers/<user_id>",
    summary="Unsubscribe a user from a topic",
    responses=documented(204, "Unsubscribed", 404, content=False),
)
def unsubscribe(topic: Topic, user_id: UserId) -> Response[str]:
    if not deps().subscribers.unsubscribe(topic, user_id):
        raise UnknownResource(f"user {user_id} is not subscribed to {topic}")
    return Response(status_code=204, body="")


@app.get(
    "/topics/<topic>/subscribers",
    summary="A topic's subscribers, a page at a time (in no particular order)",
    responses=documented(200, "One page of subscribers"),
)
def list_subscribers(topic: Topic, limit: Limit = 100, cursor: Cursor = None) -> SubscriberPage:
    return deps().subscribers.page(topic, limit, cursor)


@app.get(
    "/users/<user_id>/inbox",
    summary="The user's in-app notifications, newest first",
    responses=documented(200, "One page of the inbox"),
)
def list_inbox(
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> InboxPage:
    return deps().inbox.page(user_id, limit, cursor)


@app.get(
    "/queues",
    summary="Messages waiting, in flight and dead-lettered, per queue",
    description=(
        "Per priority queue, for each priority's intake queue, for the schedule queue and for the feedback queue:"
        " ApproximateNumberOfMessages"
        " (`visible`),"
        " ApproximateNumberOfMessagesNotVisible (`in_flight`), the DLQ's total (`dead_lettered`), and the"
        " age of the oldest dead letter among up to 10 peeked (SQS has no such attribute; CloudWatch's"
        " ApproximateAgeOfOldestMessage is not available everywhere Herald runs)."
    ),
    responses=documented(200, "Depths per queue"),
)
def get_queues() -> QueuesView:
    d = deps()
    intake = IntakeView(**{priority.value: depth for priority, depth in intake_depths(d.sqs, d.settings).items()})
    return QueuesView(
        intake=intake,
        **{priority.value: depth for priority, depth in queue_depths(d.sqs, d.settings).items()},
        schedule=schedule_depth(d.sqs, d.settings),
        feedback=feedback_depth(d.sqs, d.settings),
    )


# ---------------------------------------------------------------- preferences, templates, cancel, read state, history
# (docs/preferences.md, docs/quiet-hours.md, docs/scheduling.md, docs/templates.md, docs/inbox.md)

TemplateIdPath = Annotated[str, Path(pattern=TEMPLATE_ID_PATTERN, description="1-64 of A-Z a-z 0-9 . _ -")]
ItemId = Annotated[str, Path(pattern=ITEM_ID_PATTERN, description="An inbox item's item_id, as the inbox lists it.")]


class FeatureOff(Exception):
    """The deployment has no table or queue for this feature (a template without it)."""


@app.exception_handler(FeatureOff)
def feature_off(exception: FeatureOff) -> Response[str]:
    return error(404, str(exception))


def _require(dependency: T | None, what: str) -> T:
    if dependency is None:
        raise FeatureOff(f"{what} are not configured on this deployment")
    return dependency


@app.get(
    "/users/<user_id>/preferences",
    summary="The user's preferences: channels, categories, quiet hours, time zone, locale",
    responses=documented(200, "The preferences (all on when never set), and the required categories"),
)
def get_preferences(user_id: UserId) -> PreferencesView:
    d = deps()
    preferences = _require(d.profiles, "preferences").get(user_id) or Preferences()
    return PreferencesView(**preferences.model_dump(), required_categories=sorted(d.required_categories))


@app.put(
    "/users/<user_id>/preferences",
    summary="Replace the user's preferences",
    responses=documented(200, "The preferences as stored", *_WITH_BODY),
)
def put_preferences(user_id: UserId, preferences: Annotated[Preferences, Body()]) -> PreferencesView:
    d = deps()
    check_preferences(preferences, d.required_categories)
    _require(d.profiles, "preferences").put(user_id, preferences)
    return PreferencesView(**preferences.model_dump(), required_categories=sorted(d.required_categories))


@app.put(
    "/templates/<template_id>",
    summary="Create or replace a template: content per channel and per locale",
    responses=documented(200, "The template as stored", *_WITH_BODY),
)
def put_template(template_id: TemplateIdPath, document: Annotated[TemplateDocument, Body()]) -> TemplateView:
    templating = _require(deps().templating, "templates")
    check_template(document)
    return templating.store.put(template_id, document)


@app.get("/templates/<template_id>", summary="A template", responses=documented(200, "The template", 404))
def get_template(template_id: TemplateIdPath) -> TemplateView:
    template = _require(deps().templating, "templates").store.get(template_id)
    if template is None:
        raise UnknownResource(f"no template {template_id}")
    return template


@app.delete(
    "/templates/<template_id>",
    summary="Delete a template (notifications already accepted keep their rendering)",
    responses=documented(204, "Deleted", 404, content=False),
)
def delete_template(template_id: TemplateIdPath) -> Response[str]:
    if not _require(deps().templating, "templates").store.delete(template_id):
        raise UnknownResource(f"no template {template_id}")
    return Response(status_code=204, body="")


@app.delete(
    "/notifications/<notification_id>",
    summary="Cancel a notification that has not been fanned out yet (a scheduled one, say)",
    responses=documented(
        204,
        "Cancelled (or already cancelled): nothing of it will be sent",
        404,
        409,
        content=False,
        notes={409: "Too late: fan-out has recorded it, and its deliveries are published or being published."},
    ),
)
def cancel_notification(notification_id: NotificationId) -> Response[str]:
    outcome = deps().status.cancel(notification_id)
    if outcome is Cancellation.UNKNOWN:
        raise UnknownResource(f"no notification {notification_id}")
    if outcome is Cancellation.TOO_LATE:
        return error(409, "too late to cancel: the notification has been fanned out (or is being)", "notification_id")
    logger.info("notification cancelled", notification_id=notification_id, already=outcome.value)
    return Response(status_code=204, body="")


@app.put(
    "/users/<user_id>/inbox/<item_id>",
    summary="Mark one inbox item read or unread",
    responses=documented(200, "The item", 404, *_WITH_BODY),
)
def put_inbox_item(user_id: UserId, item_id: ItemId, state: Annotated[ReadState, Body()]) -> InboxItem:
    item = _require(deps().read_state, "inbox read states").set_read(user_id, item_id, state.read)
    if item is None:
        raise UnknownResource(f"user {user_id} has no inbox item {item_id}")
    return item


@app.post(
    "/users/<user_id>/inbox/mark-all-read",
    summary=f"Mark the user's unread inbox items read, newest first, at most {MAX_MARKED_PER_CALL} a call",
    responses=documented(200, "How many were marked, and whether unread items remain", 413, 415),
)
def mark_all_read(user_id: UserId) -> MarkedRead:
    return _require(deps().read_state, "inbox read states").mark_all_read(user_id, MAX_MARKED_PER_CALL)


@app.get(
    "/users/<user_id>/inbox/unread-count",
    summary="How many of the user's inbox items are unread",
    responses=documented(200, "The unread count"),
)
def unread_count(user_id: UserId) -> UnreadCount:
    return UnreadCount(unread=_require(deps().read_state, "inbox read states").unread_count(user_id))


@app.get(
    "/users/<user_id>/notifications",
    summary="The notifications sent to the user (every channel), newest first",
    responses=documented(200, "One page of the user's history"),
)
def list_user_notifications(
    user_id: UserId,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=2048)] = None,
) -> HistoryPage:
    return _require(deps().history, "user histories").page(user_id, limit, cursor)


@app.get("/openapi.json", summary="This API's OpenAPI description", include_in_schema=False)
def openapi() -> Response[str]:
    return Response(status_code=200, content_type=content_types.APPLICATION_JSON, body=openapi_document())


@lru_cache(maxsize=1)
def openapi_document() -> str:
    """Built once per container: the routes do not change while it lives."""
    # Imported here: Powertools' OpenAPI models cost about 0.1 s, and only this route needs them.
    from aws_lambda_powertools.event_handler.openapi.models import APIKey, APIKeyIn

    return app.get_openapi_json_schema(
        title="Herald",
        version="1.0.0",
        description="Notifications to users' devices by email, SMS, mobile push and an in-app inbox.",
        security_schemes={"apiKey": APIKey(name="x-api-key", in_=APIKeyIn.header)},
        security=[{"apiKey": []}],
    )


@inject_lambda_context
def lambda_handler(
    event: dict[str, Any], context: LambdaContext, dependencies: Dependencies | None = None
) -> dict[str, Any]:
    refusal = refused_unread(event)
    if refusal is not None:
        return _proxy(refusal)
    app.append_context(dependencies=dependencies or default_dependencies())
    return app.resolve(event, context)


BODY_METHODS = {"POST", "PUT", "PATCH"}


def refused_unread(event: Mapping[str, Any]) -> Response[str] | None:
    """A body Herald will not parse at all: too large, or not JSON (the resolver would try forms too)."""
    body = event.get("body") or ""
    size = len(body) * 3 // 4 if event.get("isBase64Encoded") else len(body.encode(errors="surrogatepass"))
    if size > MAX_REQUEST_BYTES:
        return error(413, f"the body is over {MAX_REQUEST_BYTES} bytes", "body")
    if event.get("isBase64Encoded") and not _utf8(body):
        return error(400, "body is not valid JSON (not UTF-8)", "body")
    headers = {name.lower(): value for name, value in (event.get("headers") or {}).items()}
    media_type = str(headers.get("content-type") or "").split(";")[0].strip().lower()
    if body and event.get("httpMethod") in BODY_METHODS and media_type not in {"", content_types.APPLICATION_JSON}:
        return error(415, "send the body as application/json", "content-type")
    if body and event.get("httpMethod") in BODY_METHODS:
        return refused_json(base64.b64decode(body).decode() if event.get("isBase64Encoded") else body)
    return None


def refused_json(text: str) -> Response[str] | None:
    """A body JSON does not allow (NaN, Infinity: 400) or nested deeper than Herald takes (422), before any write."""
    problems = body_problems(text)
    if not problems:
        return None
    errors = [ErrorField(field=problem.field, message=problem.message) for problem in problems]
    names = ", ".join(sorted({problem.field for problem in problems}))
    if any(problem.not_json for problem in problems):
        return error(400, f"body is not valid JSON (RFC 8259): {names}", errors=errors)
    return error(422, f"invalid {names}", errors=errors)


def _utf8(base64_body: str) -> bool:
    try:
        base64.b64decode(base64_body).decode("utf-8")
    except ValueError:  # binascii.Error and UnicodeDecodeError both are
        return False
    return True


def _proxy(response: Response[str]) -> dict[str, Any]:
    """A response given before routing (the resolver never saw the request), in the proxy format."""
    return {
        "statusCode": response.status_code,
        "multiValueHeaders": {name: [str(value)] for name, value in response.headers.items()},
        "body": response.body,
        "isBase64Encoded": False,
    }
