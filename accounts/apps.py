from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and API tokens"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from rest_framework.authtoken.models import Token

        from accounts.authentication import api_token_forget_token, api_token_forget_user

        # Cache upkeep, not business rules: whatever deletes a token or changes a user (the
        # admin, a service, the shell) also drops what this process remembers of them.
        user = get_user_model()
        post_delete.connect(api_token_forget_token, sender=Token, dispatch_uid="token-deleted")
        post_save.connect(api_token_forget_user, sender=user, dispatch_uid="user-saved")
        post_delete.connect(api_token_forget_user, sender=user, dispatch_uid="user-deleted")
