from django.conf import settings
from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from django.views.decorators.csp import csp_override, csp_report_only_override
from drf_spectacular.views import (
    SpectacularAPIView,
    SpectacularRedocView,
    SpectacularSwaggerSplitView,
)

from accounts.apis import TokenApi, TokenRevokeAllApi, TokenRevokeApi
from clubos.monitoring import metrics_view
from config.apis import HealthApi

api_v1: list[URLPattern | URLResolver] = [
    path("auth/token/", TokenApi.as_view(), name="api-token"),
    path("auth/token/revoke/", TokenRevokeApi.as_view(), name="api-token-revoke"),
    path("auth/token/revoke-all/", TokenRevokeAllApi.as_view(), name="api-token-revoke-all"),
    path("health/", HealthApi.as_view(), name="api-health"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and ReDoc load their assets from drf-spectacular-sidecar (our own static
    # files, see SPECTACULAR_SETTINGS), so the docs work with no internet access. The split
    # view serves Swagger's start-up script as a file (?script), as the Content Security
    # Policy allows no inline script (templates/drf_spectacular/).
    path("docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path(
        "redoc/",
        # ReDoc needs a wider style policy than the rest (settings.CSP_REDOC_POLICY).
        (csp_override if settings.SECURE_CSP else csp_report_only_override)(
            settings.CSP_REDOC_POLICY
        )(SpectacularRedocView.as_view(url_name="api-schema")),
        name="api-redoc",
    ),
    path("", include("requestlogs.urls")),
    path("", include("routing.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("accounts/", include("django.contrib.auth.urls")),
    # Prometheus' default path; protected by METRICS_BEARER_TOKEN / METRICS_ALLOWED_IPS.
    path("metrics", metrics_view, name="metrics"),
    path("", include("requestlogs.console_urls")),
]
