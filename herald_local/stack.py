"""The local stack: an AWS endpoint, Herald's resources from template.yaml, its API and its pollers."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

from herald_local.api_gateway import ApiGateway
from herald_local.emulator import Emulator, Placement, quiet_emulator, start_emulator
from herald_local.endpoints import SERVICES, cloudformation_serving, endpoint_of, unserved, variable
from herald_local.event_source import QueuePoller
from herald_local.faults import FaultInjector, FaultPlan, compose_hooks
from herald_local.functions import MAX_CONTAINERS, DependencyHook, LocalFunction
from herald_local.provision import Stack, provision
from herald_local.template import HeraldTemplate

log = logging.getLogger("herald_local")

DEFAULT_ENVIRONMENT = {
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
}


@dataclass
class StackOptions:
    api_port: int = 3000
    aws_port: int = 0  # 0: any free port
    api_key: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    hook: DependencyHook | None = None  # wraps a function's dependencies (tests)
    faults: FaultPlan | None = None  # fault injection (herald_local/faults.py); off when None
    max_concurrency: int = 10  # batches in flight per mapping, at most, on one laptop
    max_containers: int = MAX_CONTAINERS  # concurrent invocations per function, at most (API requests)
    log_level: str = "INFO"
    emulator: Placement = Placement.PROCESS  # where the moto server runs, when one is needed
    stack_name: str = "herald-local"


def emulator_parameters(template: HeraldTemplate, overrides: dict[str, str], client: Any) -> dict[str, str]:
    """What CloudFormation cannot create and the template takes as parameters, made on the emulator:
    the verified SES sender and the SNS platform applications for APNs and FCM."""
    values = {**template.parameter_defaults(), **overrides}
    client("ses").verify_email_identity(EmailAddress=values["SenderEmail"])
    made = {}
    for parameter, platform in (("ApnsPlatformApplicationArn", "APNS"), ("FcmPlatformApplicationArn", "GCM")):
        if not values.get(parameter):
            response = client("sns").create_platform_application(
                Name=f"herald-local-{platform.lower()}",
                Platform=platform,
                Attributes={"PlatformCredential": "local-credential", "PlatformPrincipal": "local-principal"},
            )
            made[parameter] = response["PlatformApplicationArn"]
    return made


def function_environments(template: HeraldTemplate, stack: Stack) -> dict[str, dict[str, str]]:
    """Each function's environment variables, resolved against the provisioned stack."""
    return {
        name: {key: str(stack.resolver(value)) for key, value in spec.environment.items()}
        for name, spec in template.functions.items()
    }


class LocalStack:
    def __init__(self, options: StackOptions | None = None):
        self.options = options or StackOptions()
        self.endpoint: str | None = None  # SQS's, as the one to show
        self.endpoints: dict[str, str | None] = {}  # per service: whichever emulator serves it
        self.functions: dict[str, LocalFunction] = {}
        self.pollers: list[QueuePoller] = []
        self.gateway: ApiGateway | None = None
        self.stack: Stack | None = None
        self.api_key = ""
        self.faults = FaultInjector(self.options.faults) if self.options.faults else None
        self._moto: Emulator | None = None
        self._saved_environment: dict[str, str | None] = {}

    @property
    def api_url(self) -> str:
        assert self.gateway is not None, "start() the stack first"
        return self.gateway.url

    @property
    def emulated(self) -> bool:
        """True when this stack started its own moto server (for every service, or those no variable points at)."""
        return self._moto is not None

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        quiet_emulator()
        for name, value in DEFAULT_ENVIRONMENT.items():
            if not os.environ.get(name):
                self._set_environment(name, value)
        missing = unserved()
        if missing:
            self._moto = start_emulator(self.options.emulator, self.options.aws_port)
        template = HeraldTemplate.load()  # while the emulator process starts
        if self._moto is not None:
            # moto serves every service no variable points at (all of them, by default)
            names = ["AWS_ENDPOINT_URL"] if len(missing) == len(SERVICES) else [variable(s) for s in missing]
            for name in names:
                self._set_environment(name, self._moto.endpoint)
        self.endpoints = {service: endpoint_of(service) for service in SERVICES}
        self.endpoint = self.endpoints["sqs"]
        from herald.clients import client

        client.cache_clear()
        parameters = {**emulator_parameters(template, self.options.parameters, client), **self.options.parameters}
        region = os.environ["AWS_DEFAULT_REGION"]
        self.stack = provision(
            template,
            parameters,
            client("cloudformation"),
            client("sns"),
            region,
            self.options.stack_name,
            cloudformation_for=cloudformation_serving(client("cloudformation")),
        )
        self._build_functions(template)
        for source in template.event_sources:
            concurrency = min(source.maximum_concurrency or 5, self.options.max_concurrency)
            poller = QueuePoller(
                client("sqs"),
                source,
                self.stack.ref(source.queue),
                self.stack.arn(source.queue),
                self.functions[source.function],
                concurrency,
                on_error=log.warning,
                faults=self.faults,
            )
            self.pollers.append(poller)
        api = template.apis[0]
        self.api_key = self.options.api_key or os.environ.get("HERALD_API_KEY") or secrets.token_urlsafe(24)
        self.gateway = ApiGateway(
            [(route, self.functions[route.function]) for route in api.routes],
            api_key=self.api_key,
            stage=str(self.stack.resolver(api.stage)),
            rate_limit=api.rate_limit,
            burst_limit=api.burst_limit,
            port=self.options.api_port,
        )
        for poller in self.pollers:
            poller.start()
        self.gateway.start()

    def _build_functions(self, template: HeraldTemplate) -> None:
        assert self.stack is not None
        environments = function_environments(template, self.stack)
        # Powertools reads its settings at import: the template's Globals go into the process.
        for key, value in next(iter(environments.values())).items():
            if key.startswith("POWERTOOLS_"):
                self._set_environment(key, value)
        self._set_environment("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
        self._set_environment("POWERTOOLS_LOG_LEVEL", self.options.log_level)
        for name, spec in template.functions.items():
            resolved = dataclasses.replace(spec, timeout=int(self.stack.resolver(spec.timeout)))
            self.functions[name] = LocalFunction(
                resolved, environments[name], self._hook, max_containers=self.options.max_containers
            )

    @property
    def _hook(self) -> DependencyHook | None:
        # The fault injector wraps outermost: a test's own wrapper sits between it and the provider.
        return compose_hooks(self.options.hook, self.faults.hook if self.faults else None)

    def stop(self) -> None:
        if self.gateway:
            self.gateway.stop()
        for poller in self.pollers:
            poller.stopping()  # all at once: each may be waiting in a long poll
        for poller in self.pollers:
            poller.stop()
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()
        from herald.clients import client

        client.cache_clear()

    def _set_environment(self, name: str, value: str) -> None:
        self._saved_environment.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
