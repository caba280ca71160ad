from django.apps import AppConfig


class ConfigConfig(AppConfig):
    name = "config"
    verbose_name = "System configuration"

    def ready(self) -> None:
        from config import llm  # noqa: F401  (connects the setting_changed receiver)
