from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import path

from lifecycle_app.views import accounts, jobs, projects, wizard_steps

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
    path("p/<slug:slug>/<str:stage>/<slug:step>/", wizard_steps.step_view, name="wizard_step"),
    path("admin/", admin.site.urls),
]
