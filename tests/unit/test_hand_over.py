"""A hand-over (promotion or rollback) leaves two Champions only between its
two writes: when the API is unavailable for the second one (an API restart,
a 503), the operator keeps trying within the same turn instead of leaving
the model with two Champions until a later turn; a refusal is not retried."""

from __future__ import annotations

import datetime
import logging
from typing import Any

import pytest
from fake_kube import FakeKube
from kubernetes.client import ApiException
from relearn.adapters.kube import APIUnreachable, translate
from relearn.api.abexperiment import ABExperimentSpec, ABExperimentStatus
from relearn.core import model_versions
from relearn.errors import Forbidden
from relearn.handlers.experiments import context
from test_model_versions import promotion  # the hand-over of 1.0.0 to 1.1.0

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


class FlakyKube(FakeKube):
    """Status writes to one ModelVersion fail ``failures`` times with ``error``."""

    def __init__(self, name: str, failures: int, error: Exception) -> None:
        super().__init__()
        self.flaky, self.failures, self.error = name, failures, error

    async def update_status(self, plural: str, namespace: str, name: str, change: Any, attempts: int = 5) -> Any:
        if plural == "modelversions" and name == self.flaky and self.failures > 0:
            self.failures -= 1
            raise self.error
        return await super().update_status(plural, namespace, name, change, attempts)


def version(kube: FakeKube, name: str, phase: str) -> None:
    kube.add(
        "modelversions",
        {
            "metadata": {"name": name},
            "spec": {"model": "ranker", "version": name[len("ranker-") :]},
            "status": {"phase": phase},
        },
    )


async def promote(kube: FakeKube) -> None:
    version(kube, "ranker-1.0.0", "Champion")
    version(kube, "ranker-1.1.0", "Challenger")
    body = {"metadata": {"name": "ranker-1.1.0", "namespace": "default"}}
    spec = ABExperimentSpec.model_validate({"model": "ranker", "challenger": "1.1.0", "workload": {"name": "ranker"}})
    ctx = context.Context(kube, body, spec, ABExperimentStatus(), NOW, logging.getLogger("test"), None)  # type: ignore[arg-type]
    await ctx.move_versions(kube.of("modelversions"), promotion())


def champions(kube: FakeKube) -> list[str]:
    return [v["metadata"]["name"] for v in kube.of("modelversions") if v["status"].get("phase") == "Champion"]


@pytest.mark.parametrize(
    "error",
    [
        APIUnreachable("the Kubernetes API is unreachable (ConnectionRefusedError: [Errno 111])"),
        translate(ApiException(status=503, reason="Service Unavailable")),
        translate(ApiException(status=500, reason="Internal Server Error")),
    ],
)
async def test_a_promotion_whose_second_write_meets_an_outage_ends_with_one_champion(error: Exception) -> None:
    kube = FlakyKube("ranker-1.0.0", 3, error)
    await promote(kube)
    assert champions(kube) == ["ranker-1.1.0"]
    assert kube.objects[("modelversions", "default", "ranker-1.0.0")]["status"]["phase"] == "Archived"


async def test_a_refused_second_write_is_not_retried_and_the_newer_champion_is_the_champion() -> None:
    kube = FlakyKube("ranker-1.0.0", 1, translate(ApiException(status=403, reason="Forbidden")))
    with pytest.raises(Forbidden):
        await promote(kube)
    assert kube.failures == 0  # tried once
    # Until the next turn finishes the plan, every reader takes the incoming version.
    chosen = model_versions.champion(kube.of("modelversions"))
    assert chosen is not None
    assert chosen["metadata"]["name"] == "ranker-1.1.0"


async def test_an_outage_longer_than_the_retry_leaves_the_plan_to_the_next_turn(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(context, "HAND_OVER_RETRY", 0.6)
    kube = FlakyKube("ranker-1.0.0", 100, APIUnreachable("the Kubernetes API is unreachable (timeout)"))
    with pytest.raises(APIUnreachable):
        await promote(kube)
    assert 97 <= kube.failures < 100  # tried a few times within the budget, then left to the next turn
    kube.failures = 0
    await promote(kube)  # the next turn redoes the plan: the first write is already there, the second goes through
    assert champions(kube) == ["ranker-1.1.0"]
