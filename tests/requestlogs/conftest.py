"""Fixtures shared by the request API tests (``test_api_requests``, ``test_api_stream``).

The token-authenticated client is ``api_client``, not ``client``: the console and admin
tests in this package use pytest-django's ``client`` (Django's test client), which a
fixture of that name here would replace.
"""

import pytest
from django.contrib.auth.models import User
from rest_framework.test import APIClient

from routing.models import Route
from tests.requestlogs.api_factories import default_routes_ensure, token_client
from tests.requestlogs.factories import UserFactory


@pytest.fixture
def routes() -> dict[str, Route]:
    """The four default routes, by slug."""
    return default_routes_ensure()


@pytest.fixture
def user() -> User:
    return UserFactory()


@pytest.fixture
def api_client(user: User) -> APIClient:
    """An API client sending ``user``'s token."""
    return token_client(user)
