from django.apps import AppConfig


class RequestlogsConfig(AppConfig):
    name = "requestlogs"
    verbose_name = "Request logs"
