"""The routes a request can be sent to, for API clients' pickers."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from routing.selectors import route_catalog_get


class RouteListApi(APIView):
    """Enabled routes from the cached catalog, in priority order (no database query when warm)."""

    class OutputSerializer(serializers.Serializer):
        slug = serializers.SlugField()
        name = serializers.CharField()
        description = serializers.CharField()
        is_emergency = serializers.BooleanField()

        class Meta:
            ref_name = "Route"

    @extend_schema(
        operation_id="routes_list",
        summary="Enabled routes",
        description="Pass a route's `slug` as `route` when creating a request, or `auto` "
        "to let ClubOS choose.",
        responses={200: OutputSerializer(many=True)},
    )
    def get(self, request: Request) -> Response:
        routes = [
            {
                "slug": route.slug,
                "name": route.name,
                "description": route.description,
                "is_emergency": route.is_emergency,
            }
            for route in route_catalog_get().enabled
        ]
        return Response(routes)
