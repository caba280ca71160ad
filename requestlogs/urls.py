from django.urls import path

from requestlogs.apis import (
    RequestDetailApi,
    RequestEscalateApi,
    RequestFeedbackApi,
    RequestListCreateApi,
    TimingStatsApi,
)

# The id is matched as text and parsed in the view, so a malformed id is a JSON 404.
urlpatterns = [
    path("requests/", RequestListCreateApi.as_view(), name="api-requests"),
    path("requests/<str:request_id>/", RequestDetailApi.as_view(), name="api-request-detail"),
    path(
        "requests/<str:request_id>/feedback/",
        RequestFeedbackApi.as_view(),
        name="api-request-feedback",
    ),
    path(
        "requests/<str:request_id>/escalate/",
        RequestEscalateApi.as_view(),
        name="api-request-escalate",
    ),
    path("stats/timings/", TimingStatsApi.as_view(), name="api-stats-timings"),
]
