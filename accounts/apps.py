from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        # Cache upkeep, not business rules: whatever deletes a token or changes a user (the
        # admin, a service, the shell) also drops what this process remembers of them.
        post_delete.connect(_token_deleted, sender=Token, dispatch_uid="accounts-token-deleted")
        post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid="accounts-user-saved")
        post_delete.connect(
            _user_saved, sender=get_user_model(), dispatch_uid="accounts-user-deleted"
        )


def _token_deleted(*, instance: Any, **kwargs: Any) -> None:
    from accounts.authentication import api_token_cache

    api_token_cache.forget(key=instance.key)


def _user_saved(*, instance: Any, **kwargs: Any) -> None:
    from accounts.authentication import api_token_cache

    api_token_cache.forget(user_id=instance.pk)
