"""Every URL. Views live with the package that owns them (see README, Architecture)."""

from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from lifecycle_app.catalog import views as catalog_views
from lifecycle_app.common.http import healthz
from lifecycle_app.datasets import views as dataset_views
from lifecycle_app.jobs import views as job_views
from lifecycle_app.stages.align import views as align_views
from lifecycle_app.stages.deploy import api
from lifecycle_app.stages.deploy import views as deploy_views
from lifecycle_app.stages.evaluate import views as evaluate_views
from lifecycle_app.stages.finetune import views as finetune_views
from lifecycle_app.stages.prompt import views as prompt_views
from lifecycle_app.teams import accounts
from lifecycle_app.teams import views as team_views
from lifecycle_app.wizard import deletion, overview, rerun, share_views
from lifecycle_app.wizard import views as wizard_views

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("", overview.project_list, name="project_list"),
    path("accounts/signup/", accounts.signup, name="signup"),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("jobs/", job_views.all_jobs, name="all_jobs"),
    path("p/<slug:slug>/", overview.project_detail, name="project_detail"),
    path("p/<slug:slug>/jobs/", job_views.project_jobs, name="project_jobs"),
    path("p/<slug:slug>/jobs/<int:job_id>/", job_views.job_detail, name="job_detail"),
    path("p/<slug:slug>/jobs/<int:job_id>/status/", job_views.job_status, name="job_status"),
    path("p/<slug:slug>/jobs/<int:job_id>/cancel/", job_views.job_cancel_view, name="job_cancel"),
    path("p/<slug:slug>/jobs/<int:job_id>/again/", rerun.job_run_again, name="job_run_again"),
    path("p/<slug:slug>/jobs/<int:job_id>/resume/", rerun.job_resume_view, name="job_resume"),
    path("p/<slug:slug>/models/add/", catalog_views.model_add, name="model_add"),
    path(
        "", include("lifecycle_app.stages.integrate.knowledge.urls")
    ),  # before the wizard's catch-all
    path("p/<slug:slug>/datasets/", dataset_views.dataset_list, name="dataset_list"),
    path("p/<slug:slug>/datasets/upload/", dataset_views.dataset_upload, name="dataset_upload"),
    path(
        "p/<slug:slug>/datasets/uploads/<str:token>/",
        dataset_views.dataset_staged,
        name="dataset_staged",
    ),
    path(
        "p/<slug:slug>/datasets/uploads/<str:token>/discard/",
        dataset_views.dataset_staged_discard,
        name="dataset_staged_discard",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/",
        dataset_views.dataset_detail,
        name="dataset_detail",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/rename/",
        dataset_views.dataset_rename,
        name="dataset_rename",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/delete/",
        dataset_views.dataset_delete,
        name="dataset_delete",
    ),
    path(
        "p/<slug:slug>/datasets/<int:dataset_id>/download/",
        dataset_views.dataset_download,
        name="dataset_download",
    ),
    path("p/<slug:slug>/trials/", prompt_views.trial_list_view, name="trial_list"),
    path("p/<slug:slug>/trials/compare/", prompt_views.trial_compare, name="trial_compare"),
    path("p/<slug:slug>/trials/<int:trial_id>/", prompt_views.trial_detail, name="trial_detail"),
    path("p/<slug:slug>/trials/<int:trial_id>/best/", prompt_views.trial_best, name="trial_best"),
    path("p/<slug:slug>/templates/new/", prompt_views.template_new, name="template_new"),
    path(
        "p/<slug:slug>/templates/<int:template_id>/",
        prompt_views.template_detail,
        name="template_detail",
    ),
    path("p/<slug:slug>/prompt-preview/", prompt_views.prompt_preview, name="prompt_preview"),
    path("p/<slug:slug>/playground/", prompt_views.playground, name="playground"),
    path(
        "p/<slug:slug>/finetune/<int:run_id>/",
        finetune_views.finetune_detail,
        name="finetune_detail",
    ),
    path("p/<slug:slug>/scorecard/", evaluate_views.scorecard_view, name="scorecard"),
    path(
        "p/<slug:slug>/evaluations/<int:eval_id>/",
        evaluate_views.evaluation_detail,
        name="evaluation_detail",
    ),
    path(
        "p/<slug:slug>/evaluations/<int:eval_id>/compare/",
        evaluate_views.evaluation_compare,
        name="evaluation_compare",
    ),
    path(
        "p/<slug:slug>/evaluations/<int:eval_id>/export/",
        evaluate_views.evaluation_export,
        name="evaluation_export",
    ),
    path(
        "p/<slug:slug>/align/runs/<int:align_run_id>/",
        align_views.align_run_detail,
        name="align_run_detail",
    ),
    path("p/<slug:slug>/feedback/rounds/new/", align_views.round_new, name="round_new"),
    path(
        "p/<slug:slug>/feedback/rounds/<int:round_id>/",
        align_views.round_detail,
        name="round_detail",
    ),
    path("s/<str:share_token>/scorecard/", share_views.share_scorecard, name="share_scorecard"),
    path(
        "s/<str:share_token>/evaluations/<int:eval_id>/",
        share_views.share_evaluation,
        name="share_evaluation",
    ),
    path(
        "s/<str:share_token>/evaluations/<int:eval_id>/compare/",
        share_views.share_evaluation_compare,
        name="share_evaluation_compare",
    ),
    path(
        "p/<slug:slug>/feedback/rounds/<int:round_id>/rate/",
        align_views.round_rate,
        name="round_rate",
    ),
    path(
        "p/<slug:slug>/feedback/rounds/<int:round_id>/build/",
        align_views.round_build,
        name="round_build",
    ),
    path("p/<slug:slug>/preferences/import/", align_views.prefset_import, name="prefset_import"),
    path(
        "p/<slug:slug>/preferences/<int:set_id>/", align_views.prefset_detail, name="prefset_detail"
    ),
    path(
        "p/<slug:slug>/preferences/<int:set_id>/export.jsonl",
        align_views.prefset_export,
        name="prefset_export",
    ),
    path("p/<slug:slug>/members/", team_views.members, name="members"),
    # Two-segment pages must come before the wizard's catch-all <stage>/<step>/ below.
    path("p/<slug:slug>/members/invite/", team_views.member_invite, name="member_invite"),
    path("p/<slug:slug>/members/leave/", team_views.member_leave, name="member_leave"),
    path("p/<slug:slug>/members/<int:member_id>/role/", team_views.member_role, name="member_role"),
    path(
        "p/<slug:slug>/members/<int:member_id>/remove/",
        team_views.member_remove,
        name="member_remove",
    ),
    path("p/<slug:slug>/shares/create/", team_views.share_create, name="share_create"),
    path(
        "p/<slug:slug>/shares/<int:share_id>/revoke/", team_views.share_revoke, name="share_revoke"
    ),
    path("p/<slug:slug>/delete/", deletion.project_delete_view, name="project_delete"),
    path(
        "p/<slug:slug>/variants/<int:variant_id>/deploy/",
        deploy_views.variant_deploy,
        name="variant_deploy",
    ),
    path(
        "p/<slug:slug>/variants/<int:variant_id>/download/",
        deploy_views.variant_download,
        name="variant_download",
    ),
    path(
        "p/<slug:slug>/api-tokens/create/", deploy_views.api_token_create, name="api_token_create"
    ),
    path(
        "p/<slug:slug>/api-tokens/<int:token_id>/revoke/",
        deploy_views.api_token_revoke,
        name="api_token_revoke",
    ),
    path("", include("lifecycle_app.stages.integrate.app.urls")),
    path("p/<slug:slug>/<str:stage>/<slug:step>/", wizard_views.step_view, name="wizard_step"),
    # Read-only share pages: anyone holding the token, no login (wizard/share_views.py).
    path("s/<str:share_token>/", share_views.share_project, name="share_project"),
    path("s/<str:share_token>/jobs/", share_views.share_jobs, name="share_jobs"),
    path("s/<str:share_token>/jobs/<int:job_id>/", share_views.share_job, name="share_job"),
    path(
        "s/<str:share_token>/jobs/<int:job_id>/status/",
        share_views.share_job_status,
        name="share_job_status",
    ),
    path("s/<str:share_token>/trials/", share_views.share_trials, name="share_trial_list"),
    path(
        "s/<str:share_token>/trials/compare/",
        share_views.share_trial_compare,
        name="share_trial_compare",
    ),
    path(
        "s/<str:share_token>/trials/<int:trial_id>/",
        share_views.share_trial,
        name="share_trial_detail",
    ),
    path(
        "s/<str:share_token>/finetune/<int:run_id>/",
        share_views.share_finetune,
        name="share_finetune_detail",
    ),
    path(
        "s/<str:share_token>/align/runs/<int:align_run_id>/",
        share_views.share_align_run,
        name="share_align_run",
    ),
    # The catch-all for wizard steps comes after every other two-segment share page.
    path("s/<str:share_token>/<str:stage>/<slug:step>/", share_views.share_step, name="share_step"),
    # The generation API: token auth, JSON in and out (stages/deploy/api.py).
    path("api/projects/<slug:slug>/generate", api.generate, name="api_generate"),
    path("", include("lifecycle_app.stages.integrate.api.urls")),
    path("admin/", admin.site.urls),
]
