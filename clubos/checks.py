"""Django's security checks, run against this project's middleware subclasses.

Django's ``check --deploy`` finds its security, clickjacking, CSRF and session middleware by
dotted path; ClubOS lists async-capable subclasses of them (clubos/middleware.py), so Django
reports them missing (security.W001-W003, silenced in settings) and skips every check that
depends on them (HSTS, the SSL redirect, secure cookies...). This check runs all of Django's
security checks again with each subclass also listed under its Django name, and reports what
they find under ``clubos.<id>``: a setting left insecure, or a middleware really missing.
"""

from typing import Any

from django.conf import settings
from django.core import checks
from django.test.utils import override_settings
from django.utils.module_loading import import_string

DJANGO_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
)


def middleware_with_django_names(middleware: list[str]) -> list[str]:
    named = list(middleware)
    for path in middleware:
        cls = import_string(path)
        for django_path in DJANGO_MIDDLEWARE:
            if django_path not in named and issubclass(cls, import_string(django_path)):
                named.append(django_path)
    return named


@checks.register(checks.Tags.security, deploy=True)
def security_through_subclasses(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    registry = checks.registry.registry
    django_checks = [
        check
        for check in registry.get_checks(include_deployment_checks=True)
        if checks.Tags.security in getattr(check, "tags", ())
        and check.__module__.startswith("django.")
    ]

    def run() -> dict[str, checks.CheckMessage]:
        found: dict[str, checks.CheckMessage] = {}
        for check in django_checks:
            for message in check(app_configs=app_configs, databases=None):
                found.setdefault(message.id or "", message)
        return found

    as_listed = run()
    with override_settings(MIDDLEWARE=middleware_with_django_names(settings.MIDDLEWARE)):
        as_subclasses = run()
    silenced = set(settings.SILENCED_SYSTEM_CHECKS)
    return [
        checks.CheckMessage(
            message.level, message.msg, hint=message.hint, obj=message.obj, id=f"clubos.{key}"
        )
        for key, message in as_subclasses.items()
        # Django's own run already reported the rest; what it says of the silenced middleware
        # checks is reported only if still true with the subclasses counted.
        if key not in as_listed or key in silenced
    ]
