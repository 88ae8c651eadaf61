"""The OpenAI-compatible endpoint, at the site's root so `base_url="https://host/v1"`."""

from __future__ import annotations

from django.urls import path

from lifecycle_app.stages.integrate.api import views

urlpatterns = [
    path("v1/chat/completions", views.chat_completions, name="v1_chat_completions"),
    path("v1/models", views.list_models, name="v1_models"),
]
