"""The protected resources and the read-only stats view of the DOT test project."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.views.decorators.http import require_POST
from oauth2_provider.models import get_access_token_model, get_refresh_token_model
from oauth2_provider.views.generic import (
    ProtectedResourceMetadataView,
    ProtectedResourceView,
    ScopedProtectedResourceMetadataView,
)


def _describe(request: HttpRequest) -> dict[str, Any]:
    # Reached only after DOT validated the bearer token in the Authorization header.
    value = request.headers.get("Authorization", "").partition(" ")[2]
    token = _lookup(get_access_token_model(), value)
    user = getattr(request, "resource_owner", None)
    return {
        "user": user.get_username() if user is not None else None,
        "client_id": token.application.client_id if token is not None else None,
        "scope": token.scope if token is not None else None,
        "method": request.method,
    }


def _echo(request: HttpRequest) -> JsonResponse:
    body = request.body
    data = _describe(request)
    data.update(length=len(body), sha256=hashlib.sha256(body).hexdigest())
    return JsonResponse(data)


class MeView(ProtectedResourceMetadataView):
    """401 + ``WWW-Authenticate: Bearer realm="api",error=...`` when the token is bad (RFC 6750)."""

    www_authenticate_realm = "api"

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse(_describe(request))

    def post(self, request: HttpRequest) -> HttpResponse:
        return _echo(request)

    put = post


class AdminView(ScopedProtectedResourceMetadataView):
    """Needs a scope no test token has: 403 ``insufficient_scope`` for a valid token."""

    www_authenticate_realm = "api"
    required_scopes: ClassVar[list[str]] = ["admin"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse(_describe(request))


class LegacyView(ProtectedResourceView):
    """DOT's historical default: a bare 403 without a challenge for any bad token."""

    def get(self, request: HttpRequest) -> HttpResponse:
        return JsonResponse(_describe(request))


def _lookup(model: Any, value: str) -> Any:
    names = {field.name for field in model._meta.get_fields()}
    if "token_checksum" in names:
        rows = model.objects.filter(token_checksum=hashlib.sha256(value.encode()).hexdigest())
    else:
        rows = model.objects.filter(token=value)
    return rows.order_by("-id").first()


@require_POST
def stats(request: HttpRequest) -> HttpResponse:
    """Counts for the token family of ``refresh_token`` (and whether ``access_token`` is live).

    ``refreshes`` is the number of successful rotations in the family; ``live``
    drops to 0 when DOT's reuse protection (or a revocation) killed the family.
    """
    refresh_model = get_refresh_token_model()
    access_model = get_access_token_model()
    data: dict[str, Any] = {}
    if "refresh_token" in request.POST:
        row = _lookup(refresh_model, request.POST["refresh_token"])
        if row is None or row.token_family is None:
            return HttpResponseBadRequest("unknown refresh token")
        family = refresh_model.objects.filter(token_family=row.token_family)
        issued = family.count()
        data.update(
            issued=issued,
            # Each successful rotation adds one refresh token to the family.
            refreshes=issued - 1,
            revoked=family.filter(revoked__isnull=False).count(),
            live=family.filter(revoked__isnull=True, access_token__isnull=False).count(),
        )
    if "access_token" in request.POST:
        row = _lookup(access_model, request.POST["access_token"])
        data["access_token_live"] = row is not None and not row.is_expired()
    return JsonResponse(data)


@require_POST
def login(request: HttpRequest) -> HttpResponse:
    """Sign a user in to a session (the scripted browser's first step): 204 or 403."""
    from django.contrib import auth

    user = auth.authenticate(
        request, username=request.POST.get("username"), password=request.POST.get("password")
    )
    if user is None:
        return HttpResponse(status=403)
    auth.login(request, user)
    return HttpResponse(status=204)
