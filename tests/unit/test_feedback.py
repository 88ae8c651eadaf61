"""Human feedback on the web side: rounds from two trials, rating (left/right mapped back
to A/B), agreement, preference sets from ratings, JSON Lines import with a message per bad
line and export, the alignment step queueing a DPO job, and finishing it as a candidate."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from lifecycle_app.models import (
    Artifact,
    CatalogModel,
    ExampleStatus,
    FeedbackItem,
    FeedbackRound,
    Job,
    JobKind,
    JobStatus,
    Membership,
    PreferencePair,
    PreferenceSet,
    Project,
    Rating,
    Role,
    StageKey,
    TrialExample,
)
from lifecycle_app.stages.align import agreement as feedback
from lifecycle_app.stages.align import services
from tests.factories import JobFactory
from workers.ml.params import AlignParams
from workers.ml.training import sft


def client_for(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def make_trial(
    project: Project,
    owner: User,
    model: CatalogModel,
    outputs: dict[int, str],
    *,
    prompt: str = "P{line}",
) -> Job:
    job = JobFactory.create(
        project=project,
        created_by=owner,
        base_model=model,
        kind=JobKind.TRIAL,
        status=JobStatus.SUCCEEDED,
        params={"shots": 0, "template": {"name": "T", "version": 1}, "seed": 0},
    )
    TrialExample.objects.bulk_create(
        TrialExample(
            job=job,
            index=i,
            line=line,
            input=f"input {line}",
            prompt=prompt.format(line=line),
            reference="ref",
            output=out,
            status=ExampleStatus.DONE,
        )
        for i, (line, out) in enumerate(outputs.items())
    )
    return job


@pytest.fixture
def rnd(project: Project, owner: User, tiny_model: CatalogModel) -> FeedbackRound:
    a = make_trial(project, owner, tiny_model, {n: f"answer A{n}" for n in range(1, 7)})
    b = make_trial(project, owner, tiny_model, {n: f"answer B{n}" for n in range(2, 9)})
    return services.round_create(
        project=project, user=owner, name="Round one", trial_a=a, trial_b=b, max_items=20
    )


# --- pure functions ----------------------------------------------------------------------


def test_agreement_counts_rater_pairs_and_cohens_kappa() -> None:
    ratings = [
        (1, 10, "a"),
        (1, 11, "a"),
        (2, 10, "b"),
        (2, 11, "a"),
        (3, 10, "a"),
        (3, 11, "a"),
        (4, 10, "b"),
        (4, 11, "b"),
        (5, 10, "a"),  # only one rater: not compared
    ]
    result = feedback.agreement(ratings)
    assert (result.overlapping_items, result.comparisons, result.agreed) == (4, 4, 3)
    assert result.share == 0.75
    [pair] = result.pairs
    # Rater 10: a b a b; rater 11: a a a b. Observed 3/4; chance (2·3 + 2·1)/16 = 0.5.
    assert (pair.rater_1, pair.rater_2, pair.overlap, pair.agreed) == (10, 11, 4, 3)
    assert pair.kappa == pytest.approx((0.75 - 0.5) / 0.5)
    assert feedback.agreement([(1, 10, "a")]).share is None


def test_majority_needs_more_votes_for_one_answer() -> None:
    assert feedback.majority(["a", "a", "b"]) == "a"
    assert feedback.majority(["b", "tie"]) == "b"
    assert feedback.majority(["a", "b"]) is None
    assert feedback.majority(["tie", "both_bad"]) is None


def test_the_left_right_order_is_stable_per_rater_and_varies_between_items() -> None:
    assert feedback.a_on_left(5, 1) == feedback.a_on_left(5, 1)
    sides = {feedback.a_on_left(item, 1) for item in range(1, 40)}
    assert sides == {True, False}


def test_each_bad_line_of_a_preference_file_gets_its_own_message() -> None:
    lines = [
        json.dumps({"prompt": "p", "chosen": "good", "rejected": "bad"}),
        "",
        "{not json",
        json.dumps({"prompt": "p", "chosen": "x"}),
        json.dumps({"prompt": "p", "chosen": "same", "rejected": " same "}),
        json.dumps({"prompt": "p", "chosen": 3, "rejected": "r"}),
        json.dumps({"prompt": "  ", "chosen": "c", "rejected": "r"}),
        json.dumps(["prompt", "chosen", "rejected"]),
    ]
    pairs, problems = feedback.parse_pairs("\n".join(lines).encode())
    assert pairs == [{"prompt": "p", "chosen": "good", "rejected": "bad"}]
    assert [str(p) for p in problems] == [
        "Line 3: not valid JSON (Expecting property name enclosed in double quotes, column 2).",
        "Line 4: missing 'rejected'.",
        "Line 5: 'chosen' and 'rejected' are the same text.",
        "Line 6: 'chosen' must be text.",
        "Line 7: 'prompt' is empty.",
        "Line 8: expected a JSON object with prompt, chosen and rejected.",
    ]
    assert feedback.parse_pairs(b"\xff\xfe")[1][0].message.startswith("the file is not UTF-8")
    assert feedback.parse_pairs(b"\n\n")[1][0].message == "the file has no pairs."


# --- rounds, ratings, sets ---------------------------------------------------------------


def test_a_round_holds_the_rows_both_trials_answered(rnd: FeedbackRound) -> None:
    items = list(rnd.items.all())
    assert sorted(i.line for i in items) == [2, 3, 4, 5, 6]
    for item in items:
        assert (item.completion_a, item.completion_b) == (
            f"answer A{item.line}",
            f"answer B{item.line}",
        )
        assert item.prompt == f"P{item.line}"
    assert rnd.label_a.startswith(f"Trial #{rnd.trial_a_id} ·")


def test_a_round_needs_two_trials_with_the_same_prompts(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    a = make_trial(project, owner, tiny_model, {1: "x", 2: "y"})
    b = make_trial(project, owner, tiny_model, {1: "u", 2: "v"}, prompt="Other {line}")
    with pytest.raises(services.FeedbackError, match="different prompts"):
        services.round_create(
            project=project, user=owner, name="", trial_a=a, trial_b=b, max_items=10
        )
    with pytest.raises(services.FeedbackError, match="two different trials"):
        services.round_create(
            project=project, user=owner, name="", trial_a=a, trial_b=a, max_items=10
        )


def rate(
    client: Client,
    project: Project,
    rnd: FeedbackRound,
    item: FeedbackItem,
    side: str,
    comment: str = "",
) -> Any:
    return client.post(
        reverse("round_rate", args=[project.slug, rnd.id]),
        {"item": item.id, "choice": side, "comment": comment},
    )


def test_the_side_a_rater_picks_is_stored_as_a_or_b(
    project: Project, owner: User, rnd: FeedbackRound
) -> None:
    client = client_for(owner)
    item = rnd.items.first()
    assert item is not None
    page = client.get(reverse("round_rate", args=[project.slug, rnd.id]))
    left_is_a = feedback.a_on_left(item.id, owner.id)
    left = item.completion_a if left_is_a else item.completion_b
    assert page.context["left"] == left
    assert "0 of 5" in page.content.decode()

    response = rate(client, project, rnd, item, "left", "clearer")

    assert response.status_code == 302
    rating = Rating.objects.get(item=item, rater=owner)
    assert rating.choice == ("a" if left_is_a else "b")
    assert rating.comment == "clearer"
    following = client.get(reverse("round_rate", args=[project.slug, rnd.id]))
    assert following.context["item"].index == 1
    assert "1 of 5" in following.content.decode()
    # Changing one's mind rewrites the same rating.
    rate(client, project, rnd, item, "tie")
    assert Rating.objects.get(item=item, rater=owner).choice == "tie"


def test_a_bad_rating_post_says_why_and_saves_nothing(
    project: Project, owner: User, rnd: FeedbackRound, outsider: User, tiny_model: CatalogModel
) -> None:
    client = client_for(owner)
    item = rnd.items.first()
    assert item is not None
    response = rate(client, project, rnd, item, "sideways")
    assert "Pick the better answer" in response.content.decode()
    response = client.post(
        reverse("round_rate", args=[project.slug, rnd.id]), {"item": "999999", "choice": "left"}
    )
    assert "not part of this round" in response.content.decode()
    assert not Rating.objects.exists()


def test_two_raters_see_their_agreement_and_the_majority_makes_pairs(
    project: Project, owner: User, teammate: User, rnd: FeedbackRound
) -> None:
    Membership.objects.filter(project=project, user=teammate).update(role=Role.EDITOR)
    items = list(rnd.items.all())
    verdicts = {owner: ["a", "a", "b", "tie", "a"], teammate: ["a", "b", "b", "tie", "a"]}
    for user, choices in verdicts.items():
        client = client_for(user)
        for item, choice in zip(items, choices, strict=True):
            side = choice
            if choice in ("a", "b"):
                side = (
                    "left" if (choice == "a") == feedback.a_on_left(item.id, user.id) else "right"
                )
            assert rate(client, project, rnd, item, side).status_code == 302

    page = client_for(owner).get(reverse("round_detail", args=[project.slug, rnd.id]))
    content = page.content.decode()
    assert page.context["agreement"].comparisons == 5
    assert page.context["agreement"].agreed == 4
    assert "80%" in content
    assert "alice &amp; bob" in content

    client_for(owner).post(reverse("round_build", args=[project.slug, rnd.id]), {"name": ""})

    pset = PreferenceSet.objects.get()
    pairs = list(pset.pairs.order_by("index"))
    # Row 2: a/b split, row 4: tie -> no pair; rows 1, 3, 5 -> pairs.
    expected = [items[0], items[2], items[4]]
    assert [(p.chosen, p.rejected) for p in pairs] == [
        (items[0].completion_a, items[0].completion_b),
        (items[2].completion_b, items[2].completion_a),
        (items[4].completion_a, items[4].completion_b),
    ]
    assert [p.prompt for p in pairs] == [i.prompt for i in expected]
    assert pset.note == "3 pairs from 5 rated rows; 2 without a majority"


def test_a_preference_file_with_bad_lines_is_refused_line_by_line(
    project: Project, owner: User
) -> None:
    data = "\n".join(
        [
            json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"}),
            json.dumps({"prompt": "p", "chosen": "c"}),
            json.dumps({"prompt": "p", "chosen": "c", "rejected": "c"}),
        ]
    ).encode()
    response = client_for(owner).post(
        reverse("prefset_import", args=[project.slug]),
        {"name": "Mine", "file": SimpleUploadedFile("prefs.jsonl", data)},
    )
    content = response.content.decode()
    assert "Line 2: missing &#x27;rejected&#x27;." in content
    assert "Line 3: &#x27;chosen&#x27; and &#x27;rejected&#x27; are the same text." in content
    assert "nothing was imported" in content
    assert not PreferenceSet.objects.exists()


def test_a_deep_ambiguous_or_control_character_line_is_a_problem_on_its_line(
    project: Project, owner: User
) -> None:
    good = json.dumps({"prompt": "p\twith tab", "chosen": "c\nline", "rejected": "r"})
    data = "\n".join(
        [
            good,
            "[" * 50_000 + "]" * 50_000,
            '{"prompt": "p", "chosen": "c", "rejected": "r", "chosen": "x"}',
            json.dumps({"prompt": "p\u0000", "chosen": "c", "rejected": "r\u001b[31m"}),
            json.dumps({"prompt": "a\u2028b", "chosen": "c", "rejected": "r"}, ensure_ascii=False),
            "{not json",
        ]
    ).encode()
    response = client_for(owner).post(
        reverse("prefset_import", args=[project.slug]),
        {"name": "Mine", "file": SimpleUploadedFile("prefs.jsonl", data)},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "Line 1:" not in content
    assert "Line 2: nested too deeply (more than 64 levels" in content
    assert "Line 3: the key &quot;chosen&quot; appears twice in one object" in content
    assert (
        "Line 4: &#x27;prompt&#x27;, &#x27;rejected&#x27; contains a control character (U+0000)"
        in content
    )
    # U+2028 is a valid character inside a JSON string, not a line break: line 5 is fine and
    # the bad JSON after it is still line 6.
    assert "Line 5:" not in content
    assert "Line 6: not valid JSON" in content
    assert not PreferenceSet.objects.exists()


def test_an_imported_set_exports_the_same_pairs(project: Project, owner: User) -> None:
    records = [
        {"prompt": f"p{i}", "chosen": f"good {i} ✓", "rejected": f"bad {i}"} for i in range(3)
    ]
    data = "\n".join(json.dumps({**r, "extra": 1}) for r in records).encode()
    client = client_for(owner)
    response = client.post(
        reverse("prefset_import", args=[project.slug]),
        {"name": "", "file": SimpleUploadedFile("team-prefs.jsonl", data)},
    )
    pset = PreferenceSet.objects.get()
    assert response["Location"] == reverse("prefset_detail", args=[project.slug, pset.id])
    assert (pset.name, pset.source) == ("team-prefs", "import")
    export = client.get(reverse("prefset_export", args=[project.slug, pset.id]))
    assert export["Content-Disposition"] == f'attachment; filename="preferences-{pset.id}.jsonl"'
    assert [json.loads(line) for line in export.content.decode().splitlines()] == records


# --- the alignment step ------------------------------------------------------------------


def make_set(project: Project, n: int) -> PreferenceSet:
    pset = PreferenceSet.objects.create(project=project, name="Prefs", source="import")
    PreferencePair.objects.bulk_create(
        PreferencePair(preference_set=pset, index=i, prompt=f"p{i}", chosen="c", rejected="r")
        for i in range(n)
    )
    return pset


def align_data(model: CatalogModel, pset: PreferenceSet, **kw: Any) -> dict[str, Any]:
    data = {
        "base_model": model.slug,
        "preference_set": pset.id,
        "beta": 0.1,
        "learning_rate": 5e-5,
        "max_steps": 10,
        "batch_size": 2,
        "grad_accum": 1,
        "max_length": 128,
        "lora_r": 4,
        "lora_alpha": 8,
        "target_modules": "q_proj, v_proj",
        "heldout_fraction": 0.2,
        "checkpoint_every": 5,
        "seed": 0,
    }
    data.update(kw)
    return data


def step_url(project: Project) -> str:
    return reverse("wizard_step", args=[project.slug, StageKey.ADAPT, "align"])


def test_the_align_step_queues_a_dpo_job_and_opens_its_dashboard(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    enqueued: list[int],
    django_capture_on_commit_callbacks: Any,
) -> None:
    pset = make_set(project, 10)
    client = client_for(owner)
    assert client.get(step_url(project)).status_code == 200
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(step_url(project), align_data(tiny_model, pset))

    job = Job.objects.get(kind=JobKind.ALIGN)
    assert response["Location"] == reverse("align_run_detail", args=[project.slug, job.id])
    assert enqueued == [job.id]
    params = AlignParams(**job.params)
    assert (params.preference_set_id, params.target_modules, params.max_steps) == (
        pset.id,
        ["q_proj", "v_proj"],
        10,
    )
    dashboard = client.get(response["Location"])
    assert "Alignment run" in dashboard.content.decode()
    assert "preference set Prefs" in dashboard.content.decode()


@pytest.mark.parametrize(
    ("pairs", "overrides", "message"),
    [
        (2, {}, "needs at least 2 left for training"),
        (10, {"beta": 0}, "greater than or equal to 0.001"),
        (10, {"target_modules": "q-proj!"}, "is not a layer name"),
        (10, {"warmup_steps": 0, "max_steps": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_alignment_settings_get_a_message_and_start_nothing(
    project: Project,
    owner: User,
    tiny_model: CatalogModel,
    enqueued: list[int],
    pairs: int,
    overrides: dict[str, Any],
    message: str,
) -> None:
    pset = make_set(project, pairs)
    response = client_for(owner).post(step_url(project), align_data(tiny_model, pset, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Job.objects.filter(kind=JobKind.ALIGN).exists() and enqueued == []


def test_a_finished_alignment_is_a_candidate_with_one_artifact(
    project: Project, owner: User, tiny_model: CatalogModel, enqueued: list[int], tmp_path: Path
) -> None:
    pset = make_set(project, 10)
    params = AlignParams(model_ref=tiny_model.slug, preference_set_id=pset.id)
    job = services.align_create(project=project, user=owner, base_model=tiny_model, params=params)
    final = tmp_path / "final"
    final.mkdir()
    (final / "adapter_model.safetensors").write_bytes(b"w" * 64)
    files = sft.artifact_files(final)
    summary = {"steps": 30, "before": {"accuracy": 0.4}, "after": {"accuracy": 0.8}}

    for _ in range(2):  # a redelivered task changes nothing
        candidate = services.align_finish(job=job, summary=summary, final_dir=final, files=files)

    assert Artifact.objects.filter(job=job).count() == 1
    assert Artifact.objects.get(job=job).kind == "dpo_adapter"
    assert CatalogModel.objects.filter(trained_by_job=job).count() == 1
    assert candidate.slug == f"{project.slug}-align-{job.id}"
    assert candidate.name == f"{tiny_model.name} · DPO #{job.id}"
    assert candidate in CatalogModel.objects.for_project(project)
    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert "held-out preference accuracy 40% → 80%" in job.message


def test_a_trial_over_train_rows_must_be_zero_shot(
    project: Project, owner: User, tiny_model: CatalogModel
) -> None:
    from lifecycle_app.stages.prompt.forms import TrialForm

    form = TrialForm({"split": "train", "shots": 2}, project=project)
    form.is_valid()
    assert "a trial over train rows must be zero-shot" in str(form.errors["shots"])
