from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _user_saved(*, update_fields: frozenset[str] | None = None, **kwargs: Any) -> None:
    # A login only stamps last_login (every console login does): nothing to revoke.
    if update_fields is not None and update_fields <= {"last_login"}:
        return
    _changed()


def _changed(**kwargs: Any) -> None:
    from accounts.authentication import api_token_changed

    api_token_changed()


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from knox.models import AuthToken

        import accounts.schema  # noqa: F401 - registers the OpenAPI token scheme

        # Cache upkeep, not business rules: whatever deletes a token or changes a user (a
        # service, the admin's user page, the shell) makes every process check the tokens it
        # remembers again (accounts.authentication).
        user = get_user_model()
        post_delete.connect(_changed, sender=AuthToken, dispatch_uid="api-token-deleted")
        post_save.connect(_user_saved, sender=user, dispatch_uid="api-token-user-saved")
        post_delete.connect(_changed, sender=user, dispatch_uid="api-token-user-deleted")
