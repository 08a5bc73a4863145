"""Fixtures shared by the sandbox tests."""

from __future__ import annotations

import pytest
from kubernetes import client


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)
