"""Roles as groups: ``admin``, ``operator`` and ``support``.

Permissions are normally created after ``migrate`` finishes (post_migrate), so on a fresh
database they do not exist yet when this runs; they are created here first.
"""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSION_APPS = ("auth", "authtoken", "config", "routing", "requestlogs")

# (app_label, codename) pairs; "*" means every permission of the app.
ROLES = {
    "admin": [
        ("config", "*"),
        ("routing", "*"),
        ("requestlogs", "*"),
        *(
            (app, f"{action}_{model}")
            for app, model in (
                ("auth", "user"),
                ("authtoken", "token"),
                ("authtoken", "tokenproxy"),
            )
            for action in ("view", "add", "change")
        ),
    ],
    "operator": [
        ("config", "view_systemconfig"),
        ("config", "change_systemconfig"),
        *(
            ("routing", f"{action}_{model}")
            for model in ("route", "knowledgeentry")
            for action in ("view", "add", "change")
        ),
        ("requestlogs", "view_requestlog"),
    ],
    "support": [
        ("requestlogs", "view_requestlog"),
        ("routing", "view_route"),
        ("routing", "view_knowledgeentry"),
    ],
}


def create_roles(apps, schema_editor):
    using = schema_editor.connection.alias
    for label in PERMISSION_APPS:
        app_config = apps.get_app_config(label)
        # create_permissions skips apps whose models module is unset, which is always the
        # case for the historical app configs a migration sees.
        original = getattr(app_config, "models_module", None)
        app_config.models_module = original or True
        try:
            create_permissions(app_config, apps=apps, verbosity=0, using=using)
        finally:
            app_config.models_module = original

    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, wanted in ROLES.items():
        permissions = []
        for app_label, codename in wanted:
            perms = Permission.objects.using(using).filter(content_type__app_label=app_label)
            if codename != "*":
                perms = perms.filter(codename=codename)
            found = list(perms)
            if not found:
                raise LookupError(f"permission {app_label}.{codename} does not exist")
            permissions.extend(found)
        group, _ = Group.objects.using(using).get_or_create(name=name)
        group.permissions.set(permissions)


def delete_roles(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("requestlogs", "0001_initial"),
        ("routing", "0001_initial"),
        ("config", "0002_singleton"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("authtoken", "0004_alter_tokenproxy_options"),
    ]

    operations = [migrations.RunPython(create_roles, delete_roles)]
