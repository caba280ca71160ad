"""The timing dashboard: its permission, and a covering index for its scan of a period.

reqlog_time_figures begins with created_at, so the plain created_at index goes: the
number of indexes each request's two writes update stays the same.
"""

from django.conf import settings
from django.contrib.auth.management import create_permissions
from django.db import migrations, models

# The roles (0002_roles) that see the dashboard: admins have every requestlogs permission,
# operators tune routes and settings by its figures. Support staff read the log only.
DASHBOARD_ROLES = ("admin", "operator")


def grant_dashboard(apps, schema_editor):
    using = schema_editor.connection.alias
    app_config = apps.get_app_config("requestlogs")
    # As in 0002_roles: permissions are made after migrate unless made here.
    original = getattr(app_config, "models_module", None)
    app_config.models_module = original or True
    try:
        create_permissions(app_config, apps=apps, verbosity=0, using=using)
    finally:
        app_config.models_module = original
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    permission = Permission.objects.using(using).get(
        content_type__app_label="requestlogs", codename="view_dashboard"
    )
    for group in Group.objects.using(using).filter(name__in=DASHBOARD_ROLES):
        group.permissions.add(permission)


def revoke_dashboard(apps, schema_editor):
    Permission = apps.get_model("auth", "Permission")
    Permission.objects.using(schema_editor.connection.alias).filter(
        content_type__app_label="requestlogs", codename="view_dashboard"
    ).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('requestlogs', '0006_possible_emergency'),
        ('requestlogs', '0002_roles'),
        ('routing', '0002_default_routes'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='requestlog',
            options={'ordering': ['-created_at'], 'permissions': [('view_dashboard', 'Can view the timing dashboard')]},
        ),
        migrations.AlterField(
            model_name='requestlog',
            name='created_at',
            field=models.DateTimeField(),
        ),
        migrations.AddIndex(
            model_name='requestlog',
            index=models.Index(fields=['created_at'], include=('route', 'status', 'routing_source', 'cached', 'escalated', 'feedback_helpful', 'routing_ms', 'ttft_ms', 'assistant_ms', 'total_ms'), name='reqlog_time_figures'),
        ),
        migrations.RunPython(grant_dashboard, revoke_dashboard),
    ]
