"""Requests to the stack's own moto carry a credential scope and no signature: moto reads one, never checks the other.

A boto3 call signs its request with SigV4 (a canonical request, its hash and a chain of HMACs): about a
tenth of the stack process's CPU under load, spent for an emulator on 127.0.0.1 that never checks a
signature. What moto does read is the Authorization header's credential scope: the access key (its
account), the region (its backend) and the service (which of its services answers a request on a
bare host, and, in the emulator's front, which queue a long poll waits on). `scoped_clients` hands
out the process's shared clients with the signature dropped and that scope kept, for the clients of
the moto server the stack started only: an endpoint elsewhere (LocalStack, a developer's own) gets
requests signed as AWS would. Nothing under `functions/` knows; on AWS every request is signed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import botocore

# Never a valid signature: a request that reaches a signature-checking endpoint is refused, not trusted.
UNCHECKED_SIGNATURE = "0" * 64
_CHOOSE = "herald-local-unsigned"
_SCOPE = "herald-local-credential-scope"


def scoped_clients(clients: Callable[..., Any], emulator: str | None) -> Callable[..., Any]:
    """A `client(service, one_attempt=False)`: `clients`' own client, its requests unsigned but scoped
    (`scope_only`) when its endpoint is `emulator`; as it is otherwise, or with no emulator."""
    if emulator is None:
        return clients
    own = emulator.rstrip("/")

    def client(*args: Any, **kwargs: Any) -> Any:
        # The arguments as given: a cached factory keys `client("sqs")` and `client("sqs", one_attempt=False)` apart
        made = clients(*args, **kwargs)
        if str(made.meta.endpoint_url).rstrip("/") == own:
            scope_only(made)
        return made

    return client


def scope_only(client: Any) -> None:
    """Makes `client` send its requests unsigned, each with an Authorization header that holds its
    credential scope (access key, region, service) and a signature of zeros. Once per client: a second
    call changes nothing."""
    credentials = client._request_signer._credentials
    if credentials is None:
        return  # botocore then refuses the call for want of credentials, as it would anywhere
    access_key = credentials.access_key  # read once: the local stack's credentials never rotate
    events = client.meta.events
    # First: botocore's own choose-signer handler answers with the operation's SigV4, and the first
    # answer is the one taken
    events.register_first("choose-signer", _unsigned, unique_id=_CHOOSE)
    events.register("before-sign", _scoped(access_key), unique_id=_SCOPE)


def _unsigned(**_: Any) -> Any:
    return botocore.UNSIGNED


def _scoped(access_key: str) -> Callable[..., None]:
    def scope(request: Any, signing_name: str, region_name: str, signature_version: Any, **_: Any) -> None:
        if signature_version is botocore.UNSIGNED:
            request.headers["Authorization"] = (
                f"AWS4-HMAC-SHA256 Credential={access_key}/20000101/{region_name}/{signing_name}/aws4_request, "
                f"SignedHeaders=host, Signature={UNCHECKED_SIGNATURE}"
            )

    return scope
