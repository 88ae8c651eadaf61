"""Request typing and the signed-in user, for every view."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    htmx: HtmxDetails


def declared_length(request: HttpRequest) -> int:
    """The body length the client declared (Content-Length; 0 when absent or not a
    number), to refuse a body over a limit before reading it."""
    try:
        return int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


def authed_user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User), "login_required runs first"
    return user


@require_GET
def healthz(request: HttpRequest) -> HttpResponse:
    """Liveness for load balancers and compose health checks: the process answers. Touches
    no database (a database outage must not make every web process look dead)."""
    return HttpResponse("ok", content_type="text/plain")
