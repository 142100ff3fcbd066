"""Templates: checked when stored, rendered in the sandbox at accept time, a locale chosen per recipient."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from herald.logic.templates import TemplateProblem, check_template, choose_locale, render, with_content
from herald.models.domain import Channel, DeliveryJob, Priority, now
from herald.models.templates import MAX_SMS, TemplateDocument


def document(**locales: dict[str, Any]) -> TemplateDocument:
    return TemplateDocument.model_validate({"default_locale": next(iter(locales)), "locales": locales})


WELCOME = document(
    en={
        "email": {"subject": "Hi {{ name }}", "html": "<b>{{ name }}</b>", "text": "Hi {{ name }}"},
        "sms": {"text": "Hi {{ name }}"},
        "push": {"title": "Hi", "body": "{{ name }}, {{ items | length }} items"},
        "in_app": {"title": "Hi", "body": "{{ name }}", "data": {"url": "/u/{{ id }}", "n": 3, "tags": ["{{ id }}"]}},
    },
    fr={
        "email": {"subject": "Salut {{ name }}", "html": "<b>{{ name }}</b>", "text": "Salut {{ name }}"},
        "sms": {"text": "Salut {{ name }}"},
        "push": {"title": "Salut", "body": "{{ name }}"},
        "in_app": {"title": "Salut", "body": "{{ name }}", "data": {}},
    },
)
VARIABLES = {"name": "Ada & <Bob>", "items": [1, 2], "id": 7}


def test_every_locale_and_channel_is_rendered_and_only_html_escapes():
    # When the template is rendered
    rendering = render("welcome", WELCOME, VARIABLES)

    # Then each part has its variables; the HTML part escapes them, the others keep them as they are
    en, fr = rendering.locales["en"], rendering.locales["fr"]
    assert en.email is not None and en.sms is not None and en.push is not None and en.in_app is not None
    assert (en.email.subject, en.email.html, en.email.text) == (
        "Hi Ada & <Bob>",
        "<b>Ada &amp; &lt;Bob&gt;</b>",
        "Hi Ada & <Bob>",
    )
    assert en.sms.text == "Hi Ada & <Bob>"
    assert en.push.body == "Ada & <Bob>, 2 items"
    assert en.in_app.data == {"url": "/u/7", "n": 3, "tags": ["7"]}  # strings rendered, the rest kept
    assert fr.sms is not None and fr.sms.text == "Salut Ada & <Bob>"


@pytest.mark.parametrize(
    ("variables", "template", "message"),
    [
        ({"items": [], "id": 1}, WELCOME, "locales.en.email.subject: 'name' is undefined"),
        ({"name": "x", "items": [], "id": 1}, document(en={"sms": {"text": "{{ name.__class__.__mro__ }}"}}), "unsafe"),
        ({"name": "x"}, document(en={"sms": {"text": "{{ name + 1 }}"}}), "locales.en.sms.text: TypeError"),
        ({"n": 1}, document(en={"sms": {"text": "{{ 'x' * 2000 }}"}}), f"at most {MAX_SMS} characters"),
        ({}, document(en={"sms": {"text": "{% for i in range(10**9) %}x{% endfor %}"}}), "Range too big"),
        ({"a": {}}, document(en={"sms": {"text": "{{ a.b }}"}}), "has no attribute 'b'"),
    ],
)
def test_a_missing_variable_or_a_template_error_is_a_problem_naming_variables(variables, template, message):
    # When a template is rendered with what it cannot use
    with pytest.raises(TemplateProblem) as problem:
        render("t", template, variables)

    # Then the problem names `variables` and says where and why
    assert problem.value.field == "variables"
    assert message in problem.value.message


def test_every_locale_is_checked_even_those_no_recipient_reads():
    # Given a template whose French part needs a variable the English part does not
    template = document(en={"sms": {"text": "Hi"}}, fr={"sms": {"text": "Salut {{ name }}"}})

    # When it is rendered without that variable
    with pytest.raises(TemplateProblem) as problem:
        render("t", template, {})

    # Then the French part is the one at fault
    assert problem.value.message.startswith("locales.fr.sms.text")


def test_a_syntax_error_is_found_when_the_template_is_stored():
    # Given a template with an unclosed tag in one French field
    template = document(en={"sms": {"text": "ok"}}, fr={"sms": {"text": "{% if x %}never closed"}})

    # When it is checked
    with pytest.raises(TemplateProblem) as problem:
        check_template(template)

    # Then the problem names that field
    assert problem.value.field == "locales.fr.sms.text"
    check_template(WELCOME)  # a good one passes


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"default_locale": "de", "locales": {"en": {"sms": {"text": "x"}}}}, "default_locale de has no entry"),
        (
            {
                "default_locale": "en",
                "locales": {"en": {"sms": {"text": "x"}}, "fr": {"push": {"title": "t", "body": "b"}}},
            },
            "same channels",
        ),
        ({"default_locale": "en", "locales": {"en": {}}}, "at least one"),
        ({"default_locale": "en", "locales": {"english": {"sms": {"text": "x"}}}}, "pattern"),
    ],
)
def test_a_template_document_refuses_what_cannot_be_rendered_coherently(body, message):
    with pytest.raises(ValidationError) as refused:
        TemplateDocument.model_validate(body)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        ("fr-CA", "fr-CA"),  # exact
        ("FR-ca", "fr-CA"),  # case aside
        ("fr-BE", "fr"),  # its language
        ("fr", "fr"),
        ("pt", "pt-BR"),  # the only variant of its language
        ("de", "en"),  # nothing close: the default
        (None, "en"),
    ],
)
def test_a_recipient_gets_their_locale_then_its_language_then_the_default(wanted, expected):
    assert choose_locale(wanted, ["en", "fr", "fr-CA", "pt-BR"], "en") == expected


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        (Channel.EMAIL, {"title": "Salut Ada", "body": "Salut Ada", "html": "<b>Ada</b>"}),
        (Channel.SMS, {"title": "", "body": "Salut Ada", "html": None}),
        (Channel.PUSH, {"title": "Salut", "body": "Ada", "html": None}),
        (Channel.IN_APP, {"title": "Salut", "body": "Ada", "html": None}),
    ],
)
def test_a_job_takes_its_channel_and_locale_of_the_rendering(channel, expected):
    # Given the rendering and a French job on one channel
    rendering = render("welcome", WELCOME, {"name": "Ada", "items": [], "id": 1})
    job = DeliveryJob(
        notification_id="n",
        user_id="ada",
        device_id="d",
        channel=channel,
        title="",
        body="",
        data={"from": "request"},
        priority=Priority.LOW,
        accepted_at=now(),
        content_locale="fr",
    )

    # When the job is given its content
    filled = with_content(job, rendering)

    # Then it carries what its channel sends
    assert {"title": filled.title, "body": filled.body, "html": filled.html} == expected
    assert filled.data == {"from": "request"}  # the French in-app data is empty: the request's stays
