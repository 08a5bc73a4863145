"""``spec.traffic.shadow`` and ``spec.routing.stickiness`` at admission (the
CRD's schema and CEL rules) and in the operator's models: what cannot work is
refused before an experiment starts."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError
from relearn.api.abexperiment import ABExperimentSpec
from relearn.api.schema import validate_object


def _experiment(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "relearn.dev/v1alpha1",
        "kind": "ABExperiment",
        "metadata": {"name": "x", "namespace": "ml"},
        "spec": {"model": "m", "challenger": "1.1.0", "workload": {"name": "m"}, **spec},
    }


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ({"routing": {"provider": "replicas"}, "traffic": {"shadow": {"pairs": 500}}}, "cannot mirror"),
        ({"traffic": {"shadow": {"weight": 50}}}, "duration or pairs"),
        ({"traffic": {"shadow": {"pairs": 500}}, "analysis": {"promoteWhen": "BetterByMinImprovement"}}, "paired"),
        ({"traffic": {"shadow": {"duration": "1h"}}, "analysis": {"method": "fixed"}}, "needs pairs"),
        ({"routing": {"stickiness": {}}}, "exactly one"),
        ({"routing": {"stickiness": {"cookie": "a", "header": "x-user"}}}, "exactly one"),
        ({"traffic": {"shadow": {"pairs": 0}}}, "pairs"),
        ({"routing": {"stickiness": {"cookie": "a b"}}}, "cookie"),
    ],
)
def test_refuses_a_shadow_or_stickiness_that_cannot_work_at_admission_and_in_the_operator(
    spec: dict[str, Any], why: str
) -> None:
    errors = validate_object(_experiment(**spec))
    assert any(why in str(e) for e in errors), errors
    with pytest.raises(ValidationError, match=why):
        ABExperimentSpec.model_validate(_experiment(**spec)["spec"])


def test_accepts_a_shadow_stage_with_sticky_cookies() -> None:
    body = _experiment(
        routing={"provider": "istio", "stickiness": {"cookie": "relearn-arm", "maxAge": "1h"}},
        traffic={"weight": 20, "shadow": {"weight": 50, "pairs": 2000, "duration": "2h", "live": False}},
    )
    assert validate_object(body) == []
    spec = ABExperimentSpec.model_validate(body["spec"])
    assert spec.traffic.shadow is not None
    assert (spec.traffic.shadow.weight, spec.traffic.shadow.pairs, spec.traffic.shadow.live) == (50, 2000, False)
    assert spec.routing.stickiness is not None
    assert spec.routing.stickiness.cookie == "relearn-arm"
