"""What a turn writes (relearn.handlers.outcome): conditions set by type on
the freshest status, their messages as the CRD allows them."""

from __future__ import annotations

import datetime

from relearn.handlers.outcome import Outcome, apply

NOW = datetime.datetime(2026, 12, 2, 12, 0, tzinfo=datetime.UTC)


def test_a_long_reason_reaches_status_whole_so_the_next_turn_recognises_it() -> None:
    message = "no rollback: " + "x" * 5000  # longer than an Event's, within a condition's 32768
    outcome = Outcome()
    outcome.condition("RollingBack", "False", "NoPreviousChampion", message)
    status = apply(outcome, 3, NOW)({"conditions": [{"type": "Ready", "status": "True"}]})
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["RollingBack"]["message"] == message  # compared with the next turn's refusal: equal
    assert by_type["Ready"]["status"] == "True"  # other conditions untouched
    assert outcome.state("RollingBack") == "False"
