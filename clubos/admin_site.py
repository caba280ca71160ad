"""The admin site ClubOS runs: Django's own, with one rule for every model admin on it.

Every change list, ours and those of the apps we install (axes' login attempts, the API
tokens), refuses a date out of range in its query string the way Django refuses any lookup
it cannot use (``config.admin_dates``), instead of answering 500. Applying it at
registration means a model admin added later cannot miss it.
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig


class ClubOSAdminSite(admin.AdminSite):
    def register(self, model_or_iterable: Any, admin_class: Any = None, **options: Any) -> None:
        # Imported here: this module is loaded early in app loading, before ModelAdmin can be
        # subscripted at run time (config.admin_dates writes ModelAdmin[Any]).
        from config.admin_dates import OutOfRangeDatesRefusedMixin
        from config.admin_history import RegexLookupsRefused

        admin_class = admin_class or admin.ModelAdmin
        guards = tuple(
            guard
            for guard in (RegexLookupsRefused, OutOfRangeDatesRefusedMixin)
            if not issubclass(admin_class, guard)
        )
        if guards:
            admin_class = type(
                admin_class.__name__,
                (*guards, admin_class),
                {"__module__": admin_class.__module__, "__doc__": admin_class.__doc__},
            )
        super().register(model_or_iterable, admin_class, **options)


class ClubOSAdminConfig(AdminConfig):
    default_site = "clubos.admin_site.ClubOSAdminSite"
