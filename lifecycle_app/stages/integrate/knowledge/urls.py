"""The knowledge base's URLs (included from lifecycle_app/urls.py)."""

from __future__ import annotations

from django.urls import path

from lifecycle_app.stages.integrate.knowledge import views

urlpatterns = [
    path("p/<slug:slug>/knowledge/", views.knowledge_base, name="knowledge_base"),
    path("p/<slug:slug>/knowledge/upload/", views.knowledge_upload, name="knowledge_upload"),
    path(
        "p/<slug:slug>/knowledge/documents/<int:document_id>/remove/",
        views.knowledge_remove,
        name="knowledge_remove",
    ),
    path("p/<slug:slug>/knowledge/index/", views.knowledge_index_build, name="knowledge_index"),
    path(
        "p/<slug:slug>/knowledge/index/status/",
        views.knowledge_index_status,
        name="knowledge_index_status",
    ),
    path("p/<slug:slug>/knowledge/search/", views.knowledge_search, name="knowledge_search"),
]
