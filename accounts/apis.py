"""The token exchange: a username and password in, the user's API token out."""

from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response


class TokenApi(ObtainAuthToken):
    """Username and password in, the user's API token out (created on first use)."""

    # No session authentication here: a browser's session cookie must not make this
    # endpoint demand a CSRF token from a script that only has credentials.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    @extend_schema(
        operation_id="auth_token_create",
        summary="Exchange a username and password for an API token",
        auth=[],
        request=inline_serializer(
            name="TokenRequest",
            fields={
                "username": serializers.CharField(),
                "password": serializers.CharField(style={"input_type": "password"}),
            },
        ),
        responses={
            200: inline_serializer(name="TokenResponse", fields={"token": serializers.CharField()}),
            400: OpenApiResponse(description="Missing fields or wrong username/password."),
        },
    )
    def post(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().post(request, *args, **kwargs)
