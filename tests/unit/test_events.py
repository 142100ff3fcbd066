"""The sample events in events/ are what AWS sends and carry payloads Herald accepts."""

from __future__ import annotations

from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent, SQSEvent
from pydantic import TypeAdapter

from dlq_redrive.app import RedriveRequest
from herald.models.api import DeviceRegistration, EmailRegistration, InAppRegistration, NotificationRequest
from herald.models.domain import Channel, DeliveryJob, Notification, Priority, jobs_of
from herald.models.feedback import EmailFeedback, parse_feedback
from herald.models.holds import HeldMessage, HeldNotification
from tests.events import load_event


def test_fanout_event_carries_an_accepted_notification_from_the_intake_queue():
    # Given the fan-out function's sample event
    event = SQSEvent(load_event("fanout"))

    # When its one record is read as the intake queue's message
    [record] = list(event.records)
    notification = Notification.model_validate_json(record.body)

    # Then it is a whole notification, tagged with its priority as IntakeQueue.send tags it
    assert record.event_source == "aws:sqs"
    assert "IntakeQueue" in record.event_source_arn
    assert notification.recipients == ["user-42", "user-43"]
    assert notification.channels is None
    assert notification.accepted_at.tzinfo is not None
    assert record.message_attributes["priority"].string_value == notification.priority.value


def test_deliver_event_carries_one_in_app_job_on_its_first_receive():
    # Given the deliver function's sample event
    event = SQSEvent(load_event("deliver"))

    # When its one record is read as a priority queue's message
    [record] = list(event.records)
    job = DeliveryJob.model_validate_json(record.body)

    # Then it is a high-priority in_app delivery received for the first time
    assert job.channel is Channel.IN_APP
    assert job.priority is Priority.HIGH
    assert "HighQueue" in record.event_source_arn
    assert record.attributes.approximate_receive_count == "1"
    assert record.message_attributes["priority"].string_value == "high"


def test_deliver_group_event_carries_one_recipients_two_in_app_deliveries_in_one_message():
    # Given the deliver function's sample event of a group (fan-out queues a recipient's devices of a channel so)
    [record] = list(SQSEvent(load_event("deliver_group")).records)
    notification = Notification.model_validate_json(next(SQSEvent(load_event("fanout")).records).body)

    # When its one record is read as a priority queue's message
    jobs = jobs_of(record.body)

    # Then it holds two deliveries of the fan-out event's notification to user-42, one per device
    assert [(j.user_id, j.device_id, j.channel) for j in jobs] == [
        ("user-42", "web-inbox", Channel.IN_APP),
        ("user-42", "tablet-inbox", Channel.IN_APP),
    ]
    assert {j.notification_id for j in jobs} == {notification.notification_id}
    assert {(j.title, j.body, j.accepted_at) for j in jobs} == {
        (notification.title, notification.body, notification.accepted_at)
    }
    assert record.message_attributes["priority"].string_value == "high"


def test_deliver_event_is_a_job_of_the_fanout_event_notification():
    # Given the two queue events
    notification = Notification.model_validate_json(next(SQSEvent(load_event("fanout")).records).body)
    job = DeliveryJob.model_validate_json(next(SQSEvent(load_event("deliver")).records).body)

    # Then the job is one that fanning out that notification produces
    assert job.notification_id == notification.notification_id
    assert job.user_id in notification.recipients
    assert (job.title, job.body, job.data) == (notification.title, notification.body, notification.data)
    assert job.accepted_at == notification.accepted_at


def test_send_notification_event_is_a_post_with_a_valid_notification_request():
    # Given the API's send-notification sample event
    event = APIGatewayProxyEvent(load_event("api_send_notification"))

    # When its body is validated as the API validates it
    request = NotificationRequest.model_validate(event.json_body)

    # Then it is an API key holder's JSON POST to /notifications
    assert (event.http_method, event.resource, event.path) == ("POST", "/notifications", "/notifications")
    assert event.request_context.resource_path == "/notifications"
    assert event.request_context.stage == "dev"
    assert event.headers["Content-Type"] == "application/json"
    assert event.headers["x-api-key"]
    assert not event.is_base64_encoded
    assert request.recipients == ["user-42", "user-43"]
    assert request.priority is Priority.HIGH


def test_register_device_event_is_a_put_with_a_valid_registration():
    # Given the API's register-device sample event
    event = APIGatewayProxyEvent(load_event("api_register_device"))

    # When its body is validated as the API validates it
    registration = TypeAdapter(DeviceRegistration).validate_python(event.json_body)

    # Then it registers an email device at the path its parameters name
    assert event.http_method == "PUT"
    assert event.resource == "/users/{user_id}/devices/{device_id}"
    assert event.path_parameters == {"user_id": "user-42", "device_id": "laptop-mail"}
    assert event.path == "/users/user-42/devices/laptop-mail"
    assert event.request_context.resource_path == event.resource
    assert isinstance(registration, EmailRegistration | InAppRegistration)


def test_dlq_redrive_event_asks_for_the_high_priority_queue():
    # Given the redrive function's console event
    request = RedriveRequest.model_validate(load_event("dlq_redrive"))

    # Then it names one priority
    assert request.priority is Priority.HIGH
    assert request.limit is None


def test_load_event_returns_a_fresh_deep_copy_each_call():
    # Given an event a test has changed deep inside
    changed = load_event("deliver")
    changed["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"

    # When the event is loaded again
    again = load_event("deliver")

    # Then it is the file's content, not the changed copy
    assert again["Records"][0]["attributes"]["ApproximateReceiveCount"] == "1"


def test_feedback_event_carries_an_ses_hard_bounce_from_the_feedback_queue():
    # Given the feedback function's sample event
    [record] = list(SQSEvent(load_event("feedback")).records)

    # When its one record is read as the feedback queue's message
    feedback = parse_feedback(record.body)

    # Then it is SES's event for an email sent with Herald's configuration set: grace@example.com bounced for good
    assert "FeedbackQueue" in record.event_source_arn
    assert isinstance(feedback, EmailFeedback) and feedback.bounce is not None
    assert feedback.bounce.bounce_type == "Permanent"
    assert [r.email_address for r in feedback.bounce.bounced_recipients] == ["grace@example.com"]


def test_schedule_event_holds_the_fanout_event_notification_now_due():
    # Given the sample event of the schedule queue
    [record] = load_event("schedule")["Records"]

    # Then its body is a held notification, the one the fan-out event carries, due before that event was sent
    held = HeldMessage.model_validate_json(record["body"]).held
    fanout = Notification.model_validate_json(load_event("fanout")["Records"][0]["body"])
    assert isinstance(held, HeldNotification)
    assert held.notification.notification_id == fanout.notification_id
    assert held.release_at == held.notification.send_at
