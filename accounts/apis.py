"""API tokens: a username and password in, a new token out; revoke the token in use, or all."""

from django.contrib.auth.base_user import AbstractBaseUser
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import serializers, status
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.services import api_token_create, api_token_revoke, api_token_revoke_all
from config.throttling import (
    LoginLockoutThrottle,
    TokenAddressRateThrottle,
    TokenUsernameRateThrottle,
)


class TokenApi(APIView):
    """Username and password in, a new API token and its expiry out."""

    # No session authentication here: a browser's session cookie must not make this
    # endpoint demand a CSRF token from a script that only has credentials.
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]
    # Password guessing: per client address, per username from any address, and refused
    # while django-axes has the account or address locked out (config/throttling.py).
    throttle_classes = [TokenAddressRateThrottle, TokenUsernameRateThrottle, LoginLockoutThrottle]

    @extend_schema(
        operation_id="auth_token_create",
        summary="Exchange a username and password for an API token",
        description="Each call gives a new token, valid until `expiry` (`API_TOKEN_TTL`, "
        "30 days by default). The token is shown this once: ClubOS keeps only its digest.",
        auth=[],
        request=inline_serializer(
            name="TokenRequest",
            fields={
                "username": serializers.CharField(),
                "password": serializers.CharField(style={"input_type": "password"}),
            },
        ),
        responses={
            200: inline_serializer(
                name="TokenResponse",
                fields={"token": serializers.CharField(), "expiry": serializers.DateTimeField()},
            ),
            400: OpenApiResponse(description="Missing fields or wrong username/password."),
            429: OpenApiResponse(
                description="Too many attempts from this address or for this username, or "
                "locked out after repeated failures: wait `Retry-After` seconds."
            ),
        },
    )
    def post(self, request: Request) -> Response:
        serializer = AuthTokenSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        row, token = api_token_create(user=serializer.validated_data["user"])
        expiry = serializers.DateTimeField().to_representation(row.expiry)
        return Response({"token": token, "expiry": expiry})


class TokenRevokeApi(APIView):
    """Revoke the token this request is authenticated with."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_token_revoke",
        summary="Revoke the API token in use",
        request=None,
        responses={
            204: OpenApiResponse(description="Revoked: the token is refused from now on."),
            400: OpenApiResponse(description="The request was not authenticated by a token."),
        },
    )
    def post(self, request: Request) -> Response:
        if not isinstance(request.auth, AuthToken):
            raise ValidationError({"detail": "This request was not made with an API token."})
        api_token_revoke(token=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenRevokeAllApi(APIView):
    """Revoke every API token of the user making the request."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_token_revoke_all",
        summary="Revoke all your API tokens",
        request=None,
        responses={
            200: inline_serializer(
                name="TokenRevokeAllResponse", fields={"revoked": serializers.IntegerField()}
            )
        },
    )
    def post(self, request: Request) -> Response:
        assert isinstance(request.user, AbstractBaseUser)  # IsAuthenticated
        return Response({"revoked": api_token_revoke_all(user=request.user)})
