"""URLs: DOT under ``/o/`` (so the OIDC issuer has a path), the resources, the stats."""

from __future__ import annotations

from django.urls import include, path

from . import views

urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/me", views.MeView.as_view(), name="me"),
    path("api/admin", views.AdminView.as_view(), name="admin"),
    path("api/legacy", views.LegacyView.as_view(), name="legacy"),
    path("test/stats", views.stats, name="stats"),
    path("test/login", views.login, name="login"),
]
