"""The admin's change lists with a date out of Python's range in the query string.

Django's admin refuses a lookup it cannot use by redirecting to ``?e=1``, but a date
hierarchy at year 9999 (``created_at__year=9999&created_at__month=12&created_at__day=31``)
or an aware moment with no UTC counterpart (``created_at__gte=9999-12-31T23:59:59-23:59``)
overflows while the list is built, and PostgreSQL refuses an offset beyond 15:59: a 500.
Here they are refused the same way, on every model admin (``clubos.admin_site`` applies it
at registration).
"""

from typing import Any

from django.contrib import admin
from django.contrib.admin.options import IncorrectLookupParameters
from django.db import DataError, transaction
from django.http import HttpRequest


class OutOfRangeDatesRefusedMixin(admin.ModelAdmin[Any]):
    def get_changelist_instance(self, request: HttpRequest) -> Any:
        try:
            # In a transaction of its own (a savepoint inside one already open): PostgreSQL
            # refusing a value aborts the transaction it happened in, and the request's
            # later queries (the session, the redirect) must still run.
            with transaction.atomic():
                return super().get_changelist_instance(request)
        except (OverflowError, DataError) as exc:
            # DataError: PostgreSQL refusing the value (an offset beyond 15:59, say).
            raise IncorrectLookupParameters(exc) from exc
        except ValueError as exc:
            # Only the date arithmetic's own errors; anything else is a bug to see.
            if "out of range" not in str(exc):
                raise
            raise IncorrectLookupParameters(exc) from exc
