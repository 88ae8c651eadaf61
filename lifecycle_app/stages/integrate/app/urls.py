"""Application pages (included before the wizard's catch-all step pattern)."""

from __future__ import annotations

from django.urls import path

from lifecycle_app.stages.integrate.app import evaluation, views

urlpatterns = [
    path("p/<slug:slug>/apps/", views.app_list, name="app_list"),
    path("p/<slug:slug>/apps/<int:app_id>/", views.app_detail, name="app_detail"),
    path(
        "p/<slug:slug>/apps/versions/<int:version_id>/deploy/",
        views.version_deploy,
        name="app_version_deploy",
    ),
    path("p/<slug:slug>/apps/playground/", views.app_playground, name="app_playground"),
    path("p/<slug:slug>/apps/ask/", views.app_ask, name="app_ask"),
    path("p/<slug:slug>/apps/fallback/", views.fallback_list, name="app_fallback"),
    path(
        "p/<slug:slug>/apps/fallback/<int:item_id>/handled/",
        views.fallback_handled,
        name="app_fallback_handled",
    ),
    path("p/<slug:slug>/apps/evaluation/", evaluation.evaluation_home, name="app_evaluation"),
    path(
        "p/<slug:slug>/apps/evaluation/start/", evaluation.evaluation_start, name="app_eval_start"
    ),
    path(
        "p/<slug:slug>/apps/evaluation/<int:app_eval_id>/",
        evaluation.app_scorecard,
        name="app_scorecard",
    ),
    path(
        "p/<slug:slug>/apps/evalsets/upload/", evaluation.evalset_upload, name="app_evalset_upload"
    ),
    path("p/<slug:slug>/apps/evalsets/draft/", evaluation.evalset_draft, name="app_evalset_draft"),
    path(
        "p/<slug:slug>/apps/evalsets/<int:evalset_id>/",
        evaluation.evalset_detail,
        name="app_evalset",
    ),
    path(
        "p/<slug:slug>/apps/questions/<int:question_id>/review/",
        evaluation.question_review,
        name="app_question_review",
    ),
]
