from django.apps import AppConfig


class AssistantsConfig(AppConfig):
    name = "assistants"
    verbose_name = "Assistants"

    def ready(self) -> None:
        from assistants.metrics import breakers_read
        from config.metrics import STATE_READERS

        STATE_READERS["circuit_breakers"] = breakers_read
