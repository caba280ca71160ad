from django.contrib import admin
from django.urls import URLPattern, URLResolver, include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from accounts.apis import TokenApi
from config.apis import HealthApi

api_v1: list[URLPattern | URLResolver] = [
    path("auth/token/", TokenApi.as_view(), name="api-token"),
    path("health/", HealthApi.as_view(), name="api-health"),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and ReDoc load their assets from drf-spectacular-sidecar (our own static
    # files, see SPECTACULAR_SETTINGS), so the docs work with no internet access.
    path("docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("", include("requestlogs.urls")),
    path("", include("routing.urls")),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("accounts/", include("django.contrib.auth.urls")),
    path("", include("requestlogs.console_urls")),
]
