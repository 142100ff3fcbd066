"""The local stack: an AWS endpoint, Herald's resources from template.yaml, its API and its pollers."""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herald_local import stack_file
from herald_local.api_gateway import ApiGateway
from herald_local.control import ControlEndpoint
from herald_local.credential_scope import scoped_clients
from herald_local.emulator import (
    Emulator,
    EmulatorSettings,
    Placement,
    PortInUse,
    hand_over_promptly,
    port_in_use,
    quiet_emulator,
    start_emulator,
)
from herald_local.endpoints import SERVICES, cloudformation_serving, endpoint_of, unserved, variable
from herald_local.event_source import QueuePoller
from herald_local.faults import FaultInjector, FaultPlan, compose_hooks
from herald_local.functions import MAX_CONTAINERS, DependencyHook, LocalFunction
from herald_local.garbage import FullCollections
from herald_local.mailbox_simulator import MailboxSimulator, event_destinations
from herald_local.metrics import EmfCollector
from herald_local.precedence import LanePrecedence, function_ranks, lane_rank, priority_rank
from herald_local.provision import Stack, provision
from herald_local.state import Restored, StateFolder
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
    # Where moto's state is kept across restarts (herald_local/state.py); None: in memory only, gone
    # when the stack stops (what tests want). `python -m herald_local` keeps it in .herald-local/state.
    state_dir: Path | None = None
    fresh: bool = False  # discard the state kept in state_dir and start empty
    snapshot_seconds: float = 1.0  # how often the state is saved while it changes (by the emulator)
    # DynamoDB requests to moto one at a time, so a conditional write is atomic as on AWS
    # (herald_local/emulator.py), wherever it runs. Off only to measure what that costs, or to show the race.
    atomic_dynamodb: bool = True
    control_port: int | None = None  # the control endpoint (herald_local/control.py) on this port; None: none
    stack_file: Path | None = None  # where to say how to reach this stack while it runs (herald_local/stack_file.py)
    # Lower priority lanes give way to higher ones for the CPU and the emulator (herald_local/precedence.py), as
    # separate machines would on AWS. Off only to measure what it does (`stack.precedence.enabled` switches it).
    lane_precedence: bool = True


def emulator_parameters(template: HeraldTemplate, overrides: dict[str, str], client: Any) -> dict[str, str]:
    """What CloudFormation cannot create and the template takes as parameters, made on the emulator:
    the verified SES sender and the SNS platform applications for APNs and FCM."""
    values = {**template.parameter_defaults(), **overrides}
    client("ses").verify_email_identity(EmailAddress=values["SenderEmail"])
    sns = client("sns")
    # A restarted stack finds its applications in the state it kept: their endpoints hang on them.
    existing = {
        application["PlatformApplicationArn"].rsplit("/", 1)[-1]: application["PlatformApplicationArn"]
        for page in sns.get_paginator("list_platform_applications").paginate()
        for application in page["PlatformApplications"]
    }
    made = {}
    for parameter, platform in (("ApnsPlatformApplicationArn", "APNS"), ("FcmPlatformApplicationArn", "GCM")):
        if not values.get(parameter):
            name = f"herald-local-{platform.lower()}"
            if name not in existing:
                existing[name] = sns.create_platform_application(
                    Name=name,
                    Platform=platform,
                    Attributes={"PlatformCredential": "local-credential", "PlatformPrincipal": "local-principal"},
                )["PlatformApplicationArn"]
            made[parameter] = existing[name]
    return made


def function_environments(template: HeraldTemplate, stack: Stack) -> dict[str, dict[str, str]]:
    """Each function's environment variables, resolved against the provisioned stack."""
    return {
        name: {key: str(stack.resolver(value)) for key, value in spec.environment.items()}
        for name, spec in template.functions.items()
    }


def _provisioning_client(service: str, endpoint: str | None = None) -> Any:
    """A client that makes resources: one attempt, and patience. CreateStack or Subscribe retried by the
    SDK after a slow answer (a busy machine) would make everything twice."""
    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=10, read_timeout=300, retries={"mode": "standard", "total_max_attempts": 1})
    return boto3.session.Session().client(service, endpoint_url=endpoint, config=config)


def _ensure_free(port: int, option: str, what: str) -> None:
    """Raises PortInUse if `port` cannot be bound on 127.0.0.1 (0, any free port, always can)."""
    if port == 0:
        return
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no obstacle
        try:
            probe.bind(("127.0.0.1", port))
        except OSError as error:
            if port_in_use(error):
                raise PortInUse(port, option, what) from None
            raise


# Connections each shared client keeps open to its endpoint: what every container and poller of the
# stack may have in flight at once (10 API containers; 10 batches per mapping, each sending up to 10 at once).
CLIENT_POOL = 100


def _pool_for_every_container() -> None:
    """Gives the process's boto3 clients a connection pool for all the stack's containers together.

    On Lambda each container has its own clients, each with a pool of 10 connections (botocore's
    default), plenty for one invocation. Here every container shares the process's clients
    (`herald.adapters.clients`), so a pool of 10 overflows: each call past it opens a new connection
    and drops it after one request (a TCP handshake, and a thread of the emulator's server, per call).
    Only the pool grows; timeouts and retries stay the functions' own.
    """
    from botocore.config import Config

    from herald.adapters import clients

    for name in ("_CONFIG", "_PROVIDER_CONFIG"):
        config = getattr(clients, name, None)
        if isinstance(config, Config) and config.max_pool_connections != CLIENT_POOL:
            setattr(clients, name, config.merge(Config(max_pool_connections=CLIENT_POOL)))


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
        # Always in the path, so `herald faults` can switch it on while the stack runs; no plan, no faults.
        self.faults = FaultInjector(self.options.faults)
        self.metrics = EmfCollector()  # the functions' EMF, as CloudWatch Logs would take it
        self.control: ControlEndpoint | None = None
        self.mailboxes: MailboxSimulator | None = None  # SES's mailbox simulator and event publishing
        self.precedence = LanePrecedence(enabled=self.options.lane_precedence)
        self._moto: Emulator | None = None
        self._clients: Callable[..., Any] | None = None  # `client(service, one_attempt=False)` for the stack's own use
        self._state: StateFolder | None = None
        self.restored: Restored | None = None  # the snapshot this stack started from, if any
        self._started_pollers: list[QueuePoller] = []
        self._ranks: dict[str, int] = {}  # each lane function's rank (herald_local/precedence.py)
        self._serving = False
        self._saved_environment: dict[str, str | None] = {}
        self._collections: FullCollections | None = None

    @property
    def api_url(self) -> str:
        assert self.gateway is not None, "start() the stack first"
        return self.gateway.url

    @property
    def emulator(self) -> Emulator | None:
        """The moto server this stack started, if any (in a process of its own, or in a thread)."""
        return self._moto

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
        hand_over_promptly()
        # The full garbage collections of this process (moto's state too, when the emulator is a thread of it)
        # wait for the high lane to be quiet (herald_local/garbage.py)
        self._collections = FullCollections(lambda: self.precedence.quiet_for(0)).start()
        for name, value in DEFAULT_ENVIRONMENT.items():
            if not os.environ.get(name):
                self._set_environment(name, value)
        # A taken port is found before the emulator and the template take their seconds.
        _ensure_free(self.options.api_port, "--port", "the API")
        if self.options.control_port is not None:
            _ensure_free(self.options.control_port, "--control-port", "the control endpoint")
        missing = unserved()
        if missing:
            _ensure_free(self.options.aws_port, "--aws-port", "the AWS endpoint")
            if self.options.state_dir is not None:
                self._state = StateFolder(self.options.state_dir)
                self._state.open(fresh=self.options.fresh)
            settings = EmulatorSettings(
                port=self.options.aws_port,
                atomic_dynamodb=self.options.atomic_dynamodb,
                state_dir=self.options.state_dir,
                snapshot_seconds=self.options.snapshot_seconds,
            )
            # On 127.0.0.1 only; it restores the kept state before it answers, and keeps it.
            held = (self._state.lock_fd,) if self._state is not None else ()
            self._moto = start_emulator(self.options.emulator, settings, held)
        template = HeraldTemplate.load()  # while the emulator process starts
        if self._moto is not None:
            endpoint = self._moto.endpoint  # waits for it to serve
            self.restored = self._moto.restored
            # moto serves every service no variable points at (all of them, by default)
            names = ["AWS_ENDPOINT_URL"] if len(missing) == len(SERVICES) else [variable(s) for s in missing]
            for name in names:
                self._set_environment(name, endpoint)
        self.endpoints = {service: endpoint_of(service) for service in SERVICES}
        self.endpoint = self.endpoints["sqs"]
        from herald.adapters import clients

        clients.client.cache_clear()
        _pool_for_every_container()
        # The process's shared clients; those of the moto started here send no signature (it never checks one)
        client = self._clients = scoped_clients(clients.client, self._moto.endpoint if self._moto else None)
        parameters = {**emulator_parameters(template, self.options.parameters, client), **self.options.parameters}
        region = os.environ["AWS_DEFAULT_REGION"]
        cloudformation = _provisioning_client("cloudformation")
        self.stack = provision(
            template,
            parameters,
            cloudformation,
            _provisioning_client("sns"),
            region,
            self.options.stack_name,
            cloudformation_for=cloudformation_serving(
                cloudformation, lambda endpoint: _provisioning_client("cloudformation", endpoint)
            ),
            ses=client("ses"),
        )
        sns = client("sns")
        self.mailboxes = MailboxSimulator(
            event_destinations(template, self.stack.resolver),
            lambda topic_arn, message: sns.publish(TopicArn=topic_arn, Message=message),
        )
        self._build_functions(template)
        for source in template.event_sources:
            # MaximumConcurrency may be a parameter (the fan-out lanes'): resolved like any property. A mapping
            # without it scales on AWS (from 5 batches, adding up to 300 a minute): here it gets the local cap.
            maximum = self.options.max_concurrency
            if source.maximum_concurrency:
                maximum = int(self.stack.resolver(source.maximum_concurrency))
            concurrency = min(maximum, self.options.max_concurrency)
            queue_url = self.stack.ref(source.queue)
            # Copies only where the injector's plan, if it has one at the time, asks for them
            function: Any = self.faults.with_concurrent_copies(self.functions[source.function], queue_url)
            poller = QueuePoller(
                client("sqs"),
                source,
                queue_url,
                self.stack.arn(source.queue),
                function,
                concurrency,
                on_error=log.warning,
                faults=self.faults,
                precedence=self.precedence,
                rank=lane_rank(source.queue),
            )
            self.pollers.append(poller)
        # A message sent to a lane's queue (the API's, a fan-out's continuation) holds lower lanes back at once
        self.precedence.announce_sends(
            client("sqs"), {poller.queue_url: poller.rank for poller in self.pollers if poller.rank is not None}
        )
        self.precedence.announce_publishes(client("sns"))  # a fan-out's publish: its lane's deliveries are coming
        api = template.apis[0]
        saved_key = self._state.api_key() if self._state else None
        self.api_key = (
            self.options.api_key or os.environ.get("HERALD_API_KEY") or saved_key or secrets.token_urlsafe(24)
        )
        try:
            self.gateway = ApiGateway(
                [(route, self.functions[route.function]) for route in api.routes],
                api_key=self.api_key,
                stage=str(self.stack.resolver(api.stage)),
                rate_limit=api.rate_limit,
                burst_limit=api.burst_limit,
                port=self.options.api_port,
                arriving=self._arriving,
            )
        except OSError as error:
            if port_in_use(error):
                raise PortInUse(self.options.api_port, "--port", "the API") from None
            raise
        for poller in self.pollers:
            poller.start()
            self._started_pollers.append(poller)
        self.gateway.start()
        self._serving = True
        if self.options.control_port is not None:
            try:
                self.control = ControlEndpoint(
                    self.faults, self.metrics, self.options.control_port, on_change=lambda said: print(said, flush=True)
                )
            except OSError as error:
                if port_in_use(error):
                    raise PortInUse(self.options.control_port, "--control-port", "the control endpoint") from None
                raise
            self.control.start()
        if self.options.stack_file is not None:
            stack_file.write(self.options.stack_file, self._described())

    def _described(self) -> stack_file.StackFile:
        """What the stack file says: how to reach this stack and run its functions."""
        assert self.control is not None, "a stack file needs the control endpoint (StackOptions.control_port)"
        return stack_file.StackFile(
            pid=os.getpid(),
            started_at=time.time(),
            api_url=self.api_url,
            api_key=self.api_key,
            region=os.environ["AWS_DEFAULT_REGION"],
            endpoints={service: url for service, url in self.endpoints.items() if url},
            control_url=self.control.url,
            control_token=self.control.token,
            functions={
                name: stack_file.FunctionEntry(
                    handler=function.spec.handler, timeout=function.spec.timeout, environment=function.environment
                )
                for name, function in self.functions.items()
            },
        )

    def _build_functions(self, template: HeraldTemplate) -> None:
        assert self.stack is not None
        environments = function_environments(template, self.stack)
        # Powertools reads its settings at import: the template's Globals go into the process.
        for key, value in next(iter(environments.values())).items():
            if key.startswith("POWERTOOLS_"):
                self._set_environment(key, value)
        self._set_environment("POWERTOOLS_TRACE_DISABLED", "true")  # no X-Ray daemon here
        self._set_environment("POWERTOOLS_LOG_LEVEL", self.options.log_level)
        client = self._clients
        assert client is not None
        self._ranks = function_ranks((source.function, source.queue) for source in template.event_sources)
        for name, spec in template.functions.items():
            resolved = dataclasses.replace(spec, timeout=int(self.stack.resolver(spec.timeout)))
            rank = self._ranks.get(name)
            # A lane's functions call AWS through clients that give way to the higher lanes first and name their
            # lane to the emulator (while the precedence is on: it can be switched at any time)
            clients = self.precedence.clients_for(rank, client) if rank is not None else self.precedence.marked(client)
            self.functions[name] = LocalFunction(
                resolved, environments[name], self._hook, max_containers=self.options.max_containers, clients=clients
            )

    @property
    def _hook(self) -> DependencyHook | None:
        # The mailbox simulator wraps the provider itself (SES's own behaviour); the fault injector wraps
        # outside a test's own wrapper; the metrics collector only points where the EMF goes.
        return compose_hooks(
            self.mailboxes.hook if self.mailboxes else None, self.options.hook, self.faults.hook, self.metrics.hook
        )

    def stop(self) -> None:
        """Stops serving, lets the batches in flight finish, then stops the emulator, which saves the state
        last (if kept): nothing of the stack runs any more."""
        if self.options.stack_file is not None:
            stack_file.remove(self.options.stack_file, os.getpid())
        if self.control:
            self.control.stop()
            self.control = None
        if self.gateway is not None and self._serving:
            self.gateway.stop()
            self._serving = False
        for poller in self._started_pollers:
            poller.stopping()  # all at once: each may be waiting in a long poll
        for poller in self._started_pollers:
            poller.stop()
        self._started_pollers.clear()
        try:
            if self._moto is not None:
                self._moto.stop()
                self._moto = None
        finally:
            if self._state is not None:
                self._state.close()
                self._state = None
        if self._collections is not None:
            self._collections.stop()
            self._collections = None
        for name, value in self._saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_environment.clear()
        from herald.adapters.clients import client

        client.cache_clear()

    def _arriving(self, method: str, path: str, body: bytes) -> AbstractContextManager[None]:
        """A notification posted to the API is its priority lane's work from the moment it arrives: lower lanes
        give way to it from then on, and the emulator holds their requests back from the API's first call on
        (herald_local/precedence.py), as they would not share its machine on AWS."""
        if method == "POST" and path == "/notifications":
            return self.precedence.arriving(priority_rank(body))
        return nullcontext()

    def _set_environment(self, name: str, value: str) -> None:
        self._saved_environment.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
