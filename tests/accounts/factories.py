"""API tokens as a client holds them: the row, and its clear key (only ever in memory)."""

from typing import Any

import factory
from factory.django import DjangoModelFactory
from knox.models import AuthToken

from accounts.services import api_token_create
from tests.requestlogs.factories import UserFactory


class AuthTokenFactory(DjangoModelFactory):
    """``AuthTokenFactory(user=..., expiry=...)``: a token made by the service; ``.key`` is
    the clear key the client sends (the database has only its digest)."""

    class Meta:
        model = AuthToken

    user = factory.SubFactory(UserFactory)

    @classmethod
    def _create(cls, model_class: type[AuthToken], *args: Any, **kwargs: Any) -> AuthToken:
        user = kwargs.pop("user")
        row, key = api_token_create(user=user)
        if kwargs:
            # A token in a state the service never makes (already expired): written as is.
            for name, value in kwargs.items():
                setattr(row, name, value)
            row.save(update_fields=list(kwargs))
        row.key = key  # type: ignore[attr-defined]
        return row


def authorization(token: AuthToken) -> str:
    return f"Token {token.key}"  # type: ignore[attr-defined]
