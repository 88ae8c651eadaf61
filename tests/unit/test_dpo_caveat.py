"""A DPO run's held-out preference accuracy on a handful of pairs says it means nothing
(issue 19: a run reported accuracy on 2 pairs)."""

from __future__ import annotations

from workers.ml.training.dpo import MIN_MEANINGFUL_PAIRS, heldout_caveat


def test_two_pairs_are_called_too_small_with_one_pairs_weight_and_the_interval() -> None:
    text = heldout_caveat(2, 0.5)
    assert "too small a sample" in text
    assert "One pair moves the accuracy by 50 points" in text
    assert "from 9% to 91%" in text


def test_enough_pairs_get_no_caveat() -> None:
    assert heldout_caveat(MIN_MEANINGFUL_PAIRS, 0.7) == ""
    assert heldout_caveat(0, 0.0) == ""


def test_the_run_dashboard_carries_the_caveat_of_the_latest_score() -> None:
    from lifecycle_app.jobs.models import Job
    from lifecycle_app.stages.finetune.views import _preference_caveat

    job = Job(
        result={
            "preference": {
                "before": {"accuracy": 0.0, "margin": 0.0, "pairs": 2},
                "after": {"accuracy": 0.5, "margin": 0.1, "pairs": 2},
            }
        }
    )
    assert "Only 2 held-out pairs" in _preference_caveat(job)
    assert _preference_caveat(Job(result={})) == ""
