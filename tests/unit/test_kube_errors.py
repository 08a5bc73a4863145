"""The Kubernetes client's errors are translated once, in
:mod:`relearn.adapters.kube`, into :mod:`relearn.errors`: handlers catch
NotFound, Conflict, Forbidden, Invalid or APIUnreachable and never test a
status code, and no message quotes the request body."""

from __future__ import annotations

import asyncio

import pytest
import urllib3
from kubernetes import client
from relearn.adapters.kube import DEPLOYMENTS, KubeClient, translate
from relearn.errors import (
    APIError,
    APIUnreachable,
    Conflict,
    Forbidden,
    Invalid,
    KubernetesError,
    NotFound,
    RelearnError,
)


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, Invalid),
        (401, Forbidden),
        (403, Forbidden),
        (404, NotFound),
        (409, Conflict),
        (422, Invalid),
        (500, APIError),
        (502, APIUnreachable),
        (503, APIUnreachable),
        (504, APIUnreachable),
    ],
)
def test_each_api_status_becomes_its_relearn_error(status: int, kind: type[KubernetesError]) -> None:
    error = client.ApiException(status=status, reason="Reason")
    error.body = '{"secret": "hunter2"}'
    translated = translate(error)
    assert type(translated) is kind
    assert isinstance(translated, RelearnError)
    assert translated.status == status
    assert "hunter2" not in translated.message
    assert f"{status}" in translated.message


def test_an_answered_error_is_never_mistaken_for_an_outage() -> None:
    # Handlers that skip an unreadable Secret (APIError) must still let an outage through to the guard.
    assert not isinstance(translate(client.ApiException(status=404, reason="Not Found")), APIUnreachable)
    assert not isinstance(translate(client.ApiException(status=503, reason="Unavailable")), APIError)


class Failing:
    """A typed API whose every call raises ``error``."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getattr__(self, name: str) -> object:
        def call(*_: object, **__: object) -> None:
            raise self.error

        return call


def test_the_adapter_answers_in_relearn_errors_and_transport_failures_as_unreachable() -> None:
    kube = KubeClient(client.ApiClient())
    kube.apps = Failing(client.ApiException(status=409, reason="Conflict"))  # type: ignore[assignment]
    assert asyncio.run(kube.create(DEPLOYMENTS, "ml", {"metadata": {"name": "docs"}})) is False  # exists already
    kube.apps = Failing(client.ApiException(status=403, reason="Forbidden"))  # type: ignore[assignment]
    with pytest.raises(Forbidden, match="403 Forbidden"):
        asyncio.run(kube.get(DEPLOYMENTS, "ml", "docs"))
    kube.apps = Failing(urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset")))  # type: ignore[assignment]
    with pytest.raises(APIUnreachable, match="unreachable"):
        asyncio.run(kube.get(DEPLOYMENTS, "ml", "docs"))
