from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from lifecycle_app.views import (
    accounts,
    api,
    catalog,
    datasets,
    deploy,
    evaluation,
    feedback,
    finetune,
    jobs,
    members,
    projects,
    sharing,
    trials,
    wizard_steps,
)

urlpatterns = [
    path("", projects.project_list, name="project_list"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("jobs/", jobs.all_jobs, name="all_jobs"),
    path("p/<slug:slug>/", projects.project_detail, name="project_detail"),
    path("p/<slug:slug>/jobs/", jobs.project_jobs, name="project_jobs"),
    path("p/<slug:slug>/jobs/<int:job_id>/", jobs.job_detail, name="job_detail"),
    path("p/<slug:slug>/jobs/<int:job_id>/status/", jobs.job_status, name="job_status"),
    path("p/<slug:slug>/jobs/<int:job_id>/cancel/", jobs.job_cancel_view, name="job_cancel"),
    path("p/<slug:slug>/models/add/", catalog.model_add, name="model_add"),
    path("p/<slug:slug>/datasets/", datasets.dataset_list, name="dataset_list"),
    path("p/<slug:slug>/datasets/upload/", datasets.dataset_upload, name="dataset_upload"),
    path(
        "p/<slug:slug>/datasets/uploads/<str:token>/",
        datasets.dataset_staged,
        name="dataset_staged",
    ),
    path(
        "p/<slug:slug>/datasets/uploads/<str:token>/discard/",
        datasets.dataset_staged_discard,
        name="dataset_staged_discard",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/", datasets.dataset_detail, name="dataset_detail"
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/rename/",
        datasets.dataset_rename,
        name="dataset_rename",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/delete/",
        datasets.dataset_delete,
        name="dataset_delete",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/download/",
        datasets.dataset_download,
        name="dataset_download",
    ),
    path("p/<slug:slug>/trials/", trials.trial_list_view, name="trial_list"),
    path("p/<slug:slug>/trials/compare/", trials.trial_compare, name="trial_compare"),
    path("p/<slug:slug>/trials/<int:trial_id>/", trials.trial_detail, name="trial_detail"),
    path("p/<slug:slug>/trials/<int:trial_id>/best/", trials.trial_best, name="trial_best"),
    path("p/<slug:slug>/templates/new/", trials.template_new, name="template_new"),
    path(
        "p/<slug:slug>/templates/<int:template_id>/",
        trials.template_detail,
        name="template_detail",
    ),
    path("p/<slug:slug>/prompt-preview/", trials.prompt_preview, name="prompt_preview"),
    path("p/<slug:slug>/playground/", trials.playground, name="playground"),
    path("p/<slug:slug>/finetune/<int:run_id>/", finetune.finetune_detail, name="finetune_detail"),
    path("p/<slug:slug>/scorecard/", evaluation.scorecard_view, name="scorecard"),
    path(
        "p/<slug:slug>/evaluations/<int:eval_id>/",
        evaluation.evaluation_detail,
        name="evaluation_detail",
    ),
    path(
        "p/<slug:slug>/evaluations/<int:eval_id>/compare/",
        evaluation.evaluation_compare,
        name="evaluation_compare",
    ),
    path(
        "p/<slug:slug>/evaluations/<int:eval_id>/export/",
        evaluation.evaluation_export,
        name="evaluation_export",
    ),
    path("p/<slug:slug>/feedback/rounds/new/", feedback.round_new, name="round_new"),
    path(
        "p/<slug:slug>/feedback/rounds/<int:round_id>/", feedback.round_detail, name="round_detail"
    ),
    path("s/<str:share_token>/scorecard/", sharing.share_scorecard, name="share_scorecard"),
    path(
        "s/<str:share_token>/evaluations/<int:eval_id>/",
        sharing.share_evaluation,
        name="share_evaluation",
    ),
    path(
        "s/<str:share_token>/evaluations/<int:eval_id>/compare/",
        sharing.share_evaluation_compare,
        name="share_evaluation_compare",
    ),
    path(
        "p/<slug:slug>/feedback/rounds/<int:round_id>/rate/",
        feedback.round_rate,
        name="round_rate",
    ),
    path(
        "p/<slug:slug>/feedback/rounds/<int:round_id>/build/",
        feedback.round_build,
        name="round_build",
    ),
    path("p/<slug:slug>/preferences/import/", feedback.prefset_import, name="prefset_import"),
    path("p/<slug:slug>/preferences/<int:set_id>/", feedback.prefset_detail, name="prefset_detail"),
    path(
        "p/<slug:slug>/preferences/<int:set_id>/export.jsonl",
        feedback.prefset_export,
        name="prefset_export",
    ),
    path("p/<slug:slug>/members/", members.members, name="members"),
    # Two-segment pages must come before the wizard's catch-all <stage>/<step>/ below.
    path("p/<slug:slug>/members/invite/", members.member_invite, name="member_invite"),
    path("p/<slug:slug>/members/leave/", members.member_leave, name="member_leave"),
    path("p/<slug:slug>/members/<int:member_id>/role/", members.member_role, name="member_role"),
    path(
        "p/<slug:slug>/members/<int:member_id>/remove/",
        members.member_remove,
        name="member_remove",
    ),
    path("p/<slug:slug>/shares/create/", members.share_create, name="share_create"),
    path("p/<slug:slug>/shares/<int:share_id>/revoke/", members.share_revoke, name="share_revoke"),
    path("p/<slug:slug>/delete/", members.project_delete, name="project_delete"),
    path(
        "p/<slug:slug>/variants/<int:variant_id>/deploy/",
        deploy.variant_deploy,
        name="variant_deploy",
    ),
    path(
        "p/<slug:slug>/variants/<int:variant_id>/download/",
        deploy.variant_download,
        name="variant_download",
    ),
    path("p/<slug:slug>/api-tokens/create/", deploy.api_token_create, name="api_token_create"),
    path(
        "p/<slug:slug>/api-tokens/<int:token_id>/revoke/",
        deploy.api_token_revoke,
        name="api_token_revoke",
    ),
    path("p/<slug:slug>/<str:stage>/<slug:step>/", wizard_steps.step_view, name="wizard_step"),
    # Read-only share pages: anyone holding the token, no login (views/sharing.py).
    path("s/<str:share_token>/", sharing.share_project, name="share_project"),
    path("s/<str:share_token>/jobs/", sharing.share_jobs, name="share_jobs"),
    path("s/<str:share_token>/jobs/<int:job_id>/", sharing.share_job, name="share_job"),
    path(
        "s/<str:share_token>/jobs/<int:job_id>/status/",
        sharing.share_job_status,
        name="share_job_status",
    ),
    path("s/<str:share_token>/<str:stage>/<slug:step>/", sharing.share_step, name="share_step"),
    # The generation API: token auth, JSON in and out (views/api.py).
    path("api/projects/<slug:slug>/generate", api.generate, name="api_generate"),
    path("admin/", admin.site.urls),
]
