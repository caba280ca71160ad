"""Writes of API tokens: create, revoke (one, all of a user's, a selection), clean up.

A token is knox's ``AuthToken``: the key is shown once, when it is created; the database
keeps its SHA-512 digest and its expiry. Revoking deletes the row; every worker stops
trusting it within ``accounts.authentication.VERSION_FRESH_S`` of the commit (this one at
once), through the deletion's signal (``accounts.apps``).
"""

from datetime import timedelta

from django.conf import settings
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from knox.models import AuthToken


@transaction.atomic
def api_token_create(
    *, user: AbstractBaseUser, ttl: timedelta | None = None
) -> tuple[AuthToken, str]:
    """A new token for ``user``, expiring after ``ttl`` (``API_TOKEN_TTL`` by default).

    Returns the row and the key, which exists nowhere else: the caller hands it out once.
    The user's expired tokens are deleted on the way, so logging in on every start of a
    script leaves no pile of dead rows.
    """
    api_token_delete_expired(user=user)
    return AuthToken.objects.create(user=user, expiry=ttl or settings.API_TOKEN_TTL)


@transaction.atomic
def api_token_revoke(*, token: AuthToken) -> None:
    """Revoke one token (the one a client is using, or one an admin picked)."""
    AuthToken.objects.filter(pk=token.pk).delete()


@transaction.atomic
def api_token_revoke_all(*, user: AbstractBaseUser) -> int:
    """Revoke every token of ``user``; returns how many there were."""
    deleted, _ = AuthToken.objects.filter(user=user).delete()
    return deleted


@transaction.atomic
def api_token_revoke_selected(*, tokens: QuerySet[AuthToken]) -> int:
    """Revoke the tokens of a selection (the admin's action); returns how many."""
    deleted, _ = AuthToken.objects.filter(pk__in=tokens.values("pk")).delete()
    return deleted


@transaction.atomic
def api_token_delete_expired(*, user: AbstractBaseUser | None = None) -> int:
    """Delete expired tokens (of one user, or everyone's); they are refused already."""
    expired = AuthToken.objects.filter(expiry__lte=timezone.now())
    if user is not None:
        expired = expired.filter(user=user)
    deleted, _ = expired.delete()
    return deleted
