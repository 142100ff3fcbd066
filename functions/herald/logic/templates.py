"""Templates: checked when stored, rendered in Jinja2's sandbox when a notification is accepted.

Every locale and channel is rendered at accept time, so a missing variable or a template error is
a 422 to the caller, never a failed delivery later. Undefined variables are errors
(StrictUndefined); the sandbox refuses unsafe attribute access and caps `range`; an email's HTML
part escapes its variables, the other parts do not. Jinja2 is imported on first use: only the API
function renders, and only for templated notifications.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from herald.logic.ports import RenderedContent, TemplateStore
from herald.models.domain import Channel, DeliveryJob, TemplateUse
from herald.models.failures import DeliveryFailed
from herald.models.templates import MAX_RENDERED_BYTES, Rendering, TemplateDocument

if TYPE_CHECKING:
    from jinja2.sandbox import SandboxedEnvironment

HTML_FIELDS = frozenset({"email.html"})


class TemplateProblem(ValueError):
    """A template that does not compile or render: answered 422 naming `field`."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@cache
def _environment(html: bool) -> SandboxedEnvironment:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=html, keep_trailing_newline=True)


def _sources(document: TemplateDocument) -> Iterator[tuple[str, str, str, Any]]:
    """(locale, "channel.field" or "in_app.data.<key>...", source) of every template string."""
    for locale, contents in document.locales.items():
        for channel in contents.channels():
            content = getattr(contents, channel.value).model_dump()
            for name, value in content.items():
                yield from _strings(locale, f"{channel.value}.{name}", value)


def _strings(locale: str, path: str, value: Any) -> Iterator[tuple[str, str, str, Any]]:
    if isinstance(value, str):
        yield locale, path, value, None
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(locale, f"{path}.{key}", item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(locale, f"{path}.{index}", item)


def check_template(document: TemplateDocument) -> None:
    """Compiles every string of every locale; raises TemplateProblem naming the first that does not."""
    from jinja2 import TemplateSyntaxError

    for locale, path, source, _ in _sources(document):
        try:
            _environment(path in HTML_FIELDS).from_string(source)
        except TemplateSyntaxError as error:
            raise TemplateProblem(f"locales.{locale}.{path}", f"line {error.lineno}: {error.message}") from error


def render(template_id: str, document: TemplateDocument, variables: dict[str, Any]) -> Rendering:
    """Every locale's content with `variables`; raises TemplateProblem naming the template field at fault."""
    locales: dict[str, Any] = {}
    for locale, contents in document.locales.items():
        rendered: dict[str, Any] = {}
        for channel in contents.channels():
            content = getattr(contents, channel.value).model_dump()
            rendered[channel.value] = _render_value(
                content,
                f"locales.{locale}.{channel.value}",
                lambda path, source: _render_one(path, source, variables),
            )
        locales[locale] = rendered
    try:
        rendering = Rendering(template_id=template_id, locales=locales)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise TemplateProblem("variables", f"rendered {where}: {first['msg']}") from error
    if len(rendering.model_dump_json().encode()) > MAX_RENDERED_BYTES:
        raise TemplateProblem("variables", f"the rendered content is over {MAX_RENDERED_BYTES} bytes")
    return rendering


def _render_value(value: Any, path: str, render_one: Callable[[str, str], str]) -> Any:
    if isinstance(value, str):
        return render_one(path, value)
    if isinstance(value, dict):
        return {key: _render_value(item, f"{path}.{key}", render_one) for key, item in value.items()}
    if isinstance(value, list):
        return [_render_value(item, f"{path}.{index}", render_one) for index, item in enumerate(value)]
    return value


def _render_one(path: str, source: str, variables: dict[str, Any]) -> str:
    from jinja2 import TemplateError

    html = path.endswith(".email.html")
    try:
        return _environment(html).from_string(source).render(**variables)
    except TemplateError as error:  # UndefinedError, SecurityError, TemplateSyntaxError...
        raise TemplateProblem("variables", f"{path}: {error.message or type(error).__name__}") from error
    except (TypeError, ValueError, ArithmeticError, LookupError) as error:
        raise TemplateProblem("variables", f"{path}: {type(error).__name__}: {error}") from error


@dataclass(frozen=True)
class Templating:
    """Where templates are read and their renderings kept, for accepting a templated notification."""

    store: TemplateStore
    content: RenderedContent

    def prepare(self, template_id: str, variables: dict[str, Any]) -> tuple[TemplateUse, Rendering]:
        template = self.store.get(template_id)
        if template is None:
            raise TemplateProblem("template", f"no template {template_id}")
        rendering = render(template_id, template, variables)
        use = TemplateUse(
            template_id=template_id,
            locales=list(template.locales),
            default_locale=template.default_locale,
            channels=template.channels(),
        )
        return use, rendering


def choose_locale(wanted: str | None, available: list[str], default: str) -> str:
    """The recipient's locale if the template has it (case aside), else its language, else the default.

    "fr-CA" takes "fr-CA", then "fr", then any "fr-..." variant; "pt" takes "pt-BR" if that is the only one.
    """
    if not wanted:
        return default
    by_lower = {locale.lower(): locale for locale in available}
    if wanted.lower() in by_lower:
        return by_lower[wanted.lower()]
    language = wanted.split("-")[0].lower()
    if language in by_lower:
        return by_lower[language]
    for locale in available:
        if locale.split("-")[0].lower() == language:
            return locale
    return default


def resolved(job: DeliveryJob, content: RenderedContent | None) -> DeliveryJob:
    """A templated job with its rendered content filled in (read once per container and notification);
    any other job as it is. A rendering that is gone (expired, or never written) fails the delivery for good."""
    if job.content_locale is None:
        return job
    rendering = content.get(job.notification_id) if content is not None else None
    if rendering is None:
        raise DeliveryFailed(f"the rendered content of notification {job.notification_id} is missing", permanent=True)
    try:
        return with_content(job, rendering)
    except LookupError as error:
        raise DeliveryFailed(str(error), permanent=True) from error


def with_content(job: DeliveryJob, rendering: Rendering) -> DeliveryJob:
    """The job as its channel sends it: title, body (and an email's HTML, an in-app item's data) from its locale."""
    contents = rendering.locales.get(job.content_locale or "")
    if contents is None:
        raise LookupError(f"the rendering has no locale {job.content_locale}")
    if job.channel is Channel.EMAIL and contents.email:
        fields: dict[str, Any] = {
            "title": contents.email.subject,
            "body": contents.email.text,
            "html": contents.email.html,
        }
    elif job.channel is Channel.SMS and contents.sms:
        fields = {"title": "", "body": contents.sms.text}
    elif job.channel is Channel.PUSH and contents.push:
        fields = {"title": contents.push.title, "body": contents.push.body}
    elif job.channel is Channel.IN_APP and contents.in_app:
        fields = {
            "title": contents.in_app.title,
            "body": contents.in_app.body,
            "data": {**job.data, **contents.in_app.data},
        }
    else:
        raise LookupError(f"the rendering has no {job.channel.value} content")
    return job.model_copy(update=fields)
