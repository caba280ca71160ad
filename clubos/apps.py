from django.apps import AppConfig


class ClubosConfig(AppConfig):
    name = "clubos"
    verbose_name = "ClubOS"

    def ready(self) -> None:
        from clubos import checks  # noqa: F401 - registers the deploy checks
