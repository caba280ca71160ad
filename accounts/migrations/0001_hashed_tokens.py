"""API tokens become knox's: hashed, with an expiry.

Each clear-text DRF token is converted to a knox token with the same key (its digest and
first characters stored, the key itself not), expiring ``API_TOKEN_TTL`` from now, so the
clients that hold one keep working; then the clear-text rows are deleted. The admin role
manages knox's tokens instead of DRF's (view, issue, revoke).
"""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations
from django.utils import timezone
from knox.crypto import hash_token
from knox.settings import CONSTANTS

ADMIN_ROLE = "admin"
KNOX_PERMISSIONS = ("view_authtoken", "add_authtoken", "delete_authtoken")


def tokens_to_knox(apps, schema_editor):
    using = schema_editor.connection.alias
    Token = apps.get_model("authtoken", "Token")
    AuthToken = apps.get_model("knox", "AuthToken")
    expiry = timezone.now() + settings.API_TOKEN_TTL
    AuthToken.objects.using(using).bulk_create(
        [
            AuthToken(
                digest=hash_token(token.key),
                token_key=token.key[: CONSTANTS.TOKEN_KEY_LENGTH],
                user_id=token.user_id,
                expiry=expiry,
            )
            for token in Token.objects.using(using).all()
        ],
        ignore_conflicts=True,
    )
    Token.objects.using(using).all().delete()


def admin_role_manages_knox_tokens(apps, schema_editor):
    using = schema_editor.connection.alias
    app_config = apps.get_app_config("knox")
    # As in requestlogs.0002_roles: permissions do not exist yet on a fresh database.
    original = getattr(app_config, "models_module", None)
    app_config.models_module = original or True
    try:
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
    finally:
        app_config.models_module = original
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.using(using).filter(name=ADMIN_ROLE).first()
    if group is None:
        return
    group.permissions.remove(
        *Permission.objects.using(using).filter(content_type__app_label="authtoken")
    )
    group.permissions.add(
        *Permission.objects.using(using).filter(
            content_type__app_label="knox", codename__in=KNOX_PERMISSIONS
        )
    )


def admin_role_manages_drf_tokens(apps, schema_editor):
    using = schema_editor.connection.alias
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group = Group.objects.using(using).filter(name=ADMIN_ROLE).first()
    if group is None:
        return
    group.permissions.remove(
        *Permission.objects.using(using).filter(content_type__app_label="knox")
    )
    group.permissions.add(
        *Permission.objects.using(using).filter(
            content_type__app_label="authtoken",
            codename__in=[
                f"{action}_{model}"
                for model in ("token", "tokenproxy")
                for action in ("view", "add", "change")
            ],
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("authtoken", "0004_alter_tokenproxy_options"),
        ("knox", "0009_extend_authtoken_field"),
        ("requestlogs", "0002_roles"),
    ]

    operations = [
        # The keys cannot come back from their digests: reversing keeps the knox tokens.
        migrations.RunPython(tokens_to_knox, migrations.RunPython.noop),
        migrations.RunPython(admin_role_manages_knox_tokens, admin_role_manages_drf_tokens),
    ]
