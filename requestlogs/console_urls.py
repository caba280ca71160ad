"""The web console's URL; ``clubos/urls.py`` includes it at the site root."""

from django.urls import path

from requestlogs import views

urlpatterns = [
    path("", views.console, name="console"),
]
