from django.db import migrations


def create_singleton(apps, schema_editor):
    SystemConfig = apps.get_model("config", "SystemConfig")
    SystemConfig.objects.get_or_create(pk=1)


class Migration(migrations.Migration):
    dependencies = [("config", "0001_initial")]

    operations = [migrations.RunPython(create_singleton, migrations.RunPython.noop)]
