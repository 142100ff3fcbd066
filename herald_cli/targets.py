"""What `herald` talks to: the running local stack (its stack file), or a deployed stack (its CloudFormation outputs).

- the API (`queues`, `status`): locally the stack file's `api_url` and `api_key`; deployed, output
  `ApiUrl` and the key's value read from API Gateway (output `ApiKeyId`);
- the redrive: locally DlqRedriveFunction run in this process (as `herald invoke` runs it);
  deployed, `lambda:Invoke` of output `DlqRedriveFunctionName`;
- the dead-letter queues (the redrive's progress): the redrive function's environment; outputs
  `{High,Normal,Low}DeadLetterQueueUrl`, `{High,Normal,Low}IntakeDeadLetterQueueUrl`, `ScheduleDeadLetterQueueUrl`
  and `FeedbackDeadLetterQueueUrl`;
- metrics: the EMF the local stack collected; CloudWatch `GetMetricData`, namespace `Herald`;
- faults: the local stack's control endpoint; none on a deployed stack.
"""

from __future__ import annotations

import base64
import json
import os
import time
from functools import cached_property
from typing import Any, Protocol, TextIO

import requests

from herald_cli.invoke import run_function
from herald_local.metrics import MetricSummary, summarize
from herald_local.stack_file import CONTROL_TOKEN_HEADER, StackFile

PRIORITIES = ("high", "normal", "low")
# Where each dead-letter queue's URL is, by the name DlqRedriveFunction gives it: the redrive function's
# variable, the template's output. A priority's delivery DLQ, "intake-<priority>", its fan-out DLQ, the
# schedule function's (held notifications and deliveries) and the feedback function's (SES bounces and complaints).
DEAD_LETTER_QUEUES = {
    **{p: (f"{p.upper()}_DLQ_URL", f"{p.capitalize()}DeadLetterQueueUrl") for p in PRIORITIES},
    **{f"intake-{p}": (f"{p.upper()}_INTAKE_DLQ_URL", f"{p.capitalize()}IntakeDeadLetterQueueUrl") for p in PRIORITIES},
    "schedule": ("SCHEDULE_DLQ_URL", "ScheduleDeadLetterQueueUrl"),
    "feedback": ("FEEDBACK_DLQ_URL", "FeedbackDeadLetterQueueUrl"),
}


def dead_letter_queues_of(selection: str) -> list[str]:
    """The DLQs a redrive `selection` covers, as DlqRedriveFunction reads it (DlqRedriveSettings.routes)."""
    if selection == "all":
        return list(DEAD_LETTER_QUEUES)
    if selection == "intake":
        return [name for name in DEAD_LETTER_QUEUES if name.startswith("intake-")]
    return [selection]


NAMESPACE = "Herald"  # template.yaml's POWERTOOLS_METRICS_NAMESPACE
HTTP_TIMEOUT = 30


class TargetError(Exception):
    """What the CLI cannot do against this target, said plainly (exit code 1)."""


class Target(Protocol):
    description: str

    def api(self, method: str, path: str) -> requests.Response: ...

    def dead_letter_queues(self) -> dict[str, str]: ...

    def sqs(self) -> Any: ...

    def redrive(self, request: dict[str, Any], log: TextIO) -> dict[str, Any]: ...

    def metrics(self, since: int, minutes: int) -> tuple[list[MetricSummary], list[dict[str, Any]]]: ...

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]: ...


def answer_of(response: requests.Response, what: str) -> dict[str, Any]:
    """A JSON answer; an error answer as a TargetError saying what was refused and which fields."""
    try:
        body = response.json()
    except ValueError:
        body = {"message": response.text[:500]}
    if not response.ok:
        errors = "; ".join(f"{e.get('field')}: {e.get('message')}" for e in body.get("errors", []))
        raise TargetError(
            f"{what} answered {response.status_code}: {body.get('message')}{f' ({errors})' if errors else ''}"
        )
    answer: dict[str, Any] = body
    return answer


class LocalTarget:
    """The local stack that wrote `stack` (python -m herald_local, make run)."""

    def __init__(self, stack: StackFile):
        self.stack = stack
        self.description = f"the local stack at {stack.api_url} (pid {stack.pid})"

    def api(self, method: str, path: str) -> requests.Response:
        try:
            return requests.request(
                method, f"{self.stack.api_url}{path}", headers={"x-api-key": self.stack.api_key}, timeout=HTTP_TIMEOUT
            )
        except requests.ConnectionError as error:
            raise TargetError(
                f"the local stack does not answer at {self.stack.api_url}: is it still running?"
            ) from error

    def dead_letter_queues(self) -> dict[str, str]:
        environment = self.stack.functions["DlqRedriveFunction"].environment
        return {name: environment[variable] for name, (variable, _) in DEAD_LETTER_QUEUES.items()}

    def sqs(self) -> Any:
        import boto3

        return boto3.session.Session(
            aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
            aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
            region_name=self.stack.region,
        ).client("sqs", endpoint_url=self.stack.endpoints["sqs"])

    def redrive(self, request: dict[str, Any], log: TextIO) -> dict[str, Any]:
        invocation = run_function(self.stack, "DlqRedriveFunction", request, log)
        if invocation.error is not None:
            raise TargetError(
                f"DlqRedriveFunction failed: {invocation.error['errorType']}: {invocation.error['errorMessage']}"
            )
        result: dict[str, Any] = invocation.result
        return result

    def metrics(self, since: int, minutes: int) -> tuple[list[MetricSummary], list[dict[str, Any]]]:
        records = self.control("GET", f"/metrics?since={since}")["records"]
        cutoff = time.time() - minutes * 60
        kept = [record for record in records if record["at"] >= cutoff]
        return summarize(record["document"] for record in kept), kept

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            response = requests.request(
                method,
                f"{self.stack.control_url}{path}",
                headers={CONTROL_TOKEN_HEADER: self.stack.control_token},
                json=body,
                timeout=HTTP_TIMEOUT,
            )
        except requests.ConnectionError as error:
            raise TargetError(
                f"the local stack's control endpoint does not answer at {self.stack.control_url}"
            ) from error
        return answer_of(response, "the control endpoint")


class DeployedTarget:
    """A stack deployed with `sam deploy`, found by its name; AWS credentials as boto3 finds them."""

    def __init__(self, stack_name: str, region: str | None = None, session: Any = None):
        import boto3

        self.stack_name = stack_name
        self._session = session or boto3.session.Session(region_name=region)
        self.description = f"stack {stack_name} in {self._session.region_name}"

    @cached_property
    def outputs(self) -> dict[str, str]:
        from botocore.exceptions import ClientError

        try:
            stacks = self._session.client("cloudformation").describe_stacks(StackName=self.stack_name)["Stacks"]
        except ClientError as error:
            raise TargetError(f"cannot read stack {self.stack_name}: {error}") from error
        return {output["OutputKey"]: output["OutputValue"] for output in stacks[0].get("Outputs", [])}

    def output(self, name: str) -> str:
        if name not in self.outputs:
            raise TargetError(f"stack {self.stack_name} has no output {name}: deploy the current template.yaml")
        return self.outputs[name]

    @cached_property
    def api_key(self) -> str:
        answer = self._session.client("apigateway").get_api_key(apiKey=self.output("ApiKeyId"), includeValue=True)
        value: str = answer["value"]
        return value

    def api(self, method: str, path: str) -> requests.Response:
        return requests.request(
            method, f"{self.output('ApiUrl')}{path}", headers={"x-api-key": self.api_key}, timeout=HTTP_TIMEOUT
        )

    def dead_letter_queues(self) -> dict[str, str]:
        return {name: self.output(output) for name, (_, output) in DEAD_LETTER_QUEUES.items()}

    def sqs(self) -> Any:
        return self._session.client("sqs")

    def redrive(self, request: dict[str, Any], log: TextIO) -> dict[str, Any]:
        from botocore.config import Config

        # The function may wait for the move (wait_seconds, up to its 300 s timeout): read for longer.
        lambda_client = self._session.client("lambda", config=Config(read_timeout=900, retries={"max_attempts": 0}))
        answer = lambda_client.invoke(
            FunctionName=self.output("DlqRedriveFunctionName"), Payload=json.dumps(request).encode(), LogType="Tail"
        )
        if answer.get("LogResult"):
            log.write(base64.b64decode(answer["LogResult"]).decode(errors="replace"))
        payload = json.loads(answer["Payload"].read() or b"null")
        if answer.get("FunctionError"):
            raise TargetError(f"DlqRedriveFunction failed: {payload.get('errorType')}: {payload.get('errorMessage')}")
        result: dict[str, Any] = payload
        return result

    def metrics(self, since: int, minutes: int) -> tuple[list[MetricSummary], list[dict[str, Any]]]:
        """Each Herald metric over the last `minutes`, as CloudWatch holds it (one period: the whole window)."""
        cloudwatch = self._session.client("cloudwatch")
        metrics = [
            metric
            for page in cloudwatch.get_paginator("list_metrics").paginate(Namespace=NAMESPACE)
            for metric in page["Metrics"]
        ]
        period = max(60, minutes * 60)
        end = (int(time.time()) // 60 + 1) * 60  # the next whole minute: the current one counts whole
        summaries: list[MetricSummary] = []
        statistics = ("SampleCount", "Sum", "Minimum", "Maximum")
        for start in range(0, len(metrics), 100):  # GetMetricData: 500 queries a call, 4 per metric
            chunk = metrics[start : start + 100]
            queries = [
                {
                    "Id": f"m{index}_{statistic.lower()}",
                    "MetricStat": {"Metric": metric, "Period": period, "Stat": statistic},
                    "ReturnData": True,
                }
                for index, metric in enumerate(chunk)
                for statistic in statistics
            ]
            results = cloudwatch.get_metric_data(MetricDataQueries=queries, StartTime=end - period, EndTime=end)
            # The window may straddle two periods: add up counts and sums, keep the extremes.
            values = {result["Id"]: result["Values"] for result in results["MetricDataResults"] if result["Values"]}
            for index, metric in enumerate(chunk):
                samples = sum(values.get(f"m{index}_samplecount", []))
                if not samples:
                    continue
                summaries.append(
                    MetricSummary(
                        namespace=NAMESPACE,
                        name=metric["MetricName"],
                        unit="",
                        dimensions={d["Name"]: d["Value"] for d in metric.get("Dimensions", [])},
                        samples=int(samples),
                        sum=sum(values.get(f"m{index}_sum", [])),
                        minimum=min(values.get(f"m{index}_minimum", [0.0])),
                        maximum=max(values.get(f"m{index}_maximum", [0.0])),
                    )
                )
        return sorted(summaries, key=lambda s: (s.name, sorted(s.dimensions.items()))), []

    def control(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        raise TargetError("fault injection is the local stack's only: there is nothing to switch on a deployed stack")
