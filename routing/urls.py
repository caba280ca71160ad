from django.urls import path

from routing.apis import RouteListApi

urlpatterns = [
    path("routes/", RouteListApi.as_view(), name="api-routes"),
]
