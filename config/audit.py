"""The audit trail of configuration changes (django-simple-history).

Routes, their knowledge entries and the system configuration each keep a history table: one
row per change, with who made it (``history_user``), where it came from
(``history_change_reason``: ``admin``, ``system``, ``command: NAME``...) and every field's
value after it, so the admin shows old -> new for each field that changed.

Writes go through the services, which say who acts (``audit_as``); nothing here runs on a
read, so the request path's cached config and routes cost no query more than before.

A secret (the Slack webhook URL, a credential) never reaches a history table in clear: its
historical column is a ``MaskedSecretField``, which masks whatever is written to it, by any
path (a save, ``bulk_create``, simple-history's own ``populate_history``).
"""

import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import models
from simple_history.models import HistoricalRecords
from simple_history.utils import get_history_manager_for_model

# The change reason of a change no person made (a service called by code, a sweep).
AUDIT_SYSTEM = "system"
AUDIT_ADMIN = "admin"
AUDIT_BASELINE = "baseline: the values before the first recorded change"

MASKED_PREFIX = "[secret] "


def secret_mask(value: object) -> str:
    """What the history keeps of a secret: enough to tell two values apart, not to use one.

    ``https://hooks.slack.com/services/T0/B0/abcd...WXYZ`` becomes ``[secret]
    https://hooks.slack.com/… ends WXYZ, fingerprint 1a2b3c4d``. The host is not secret and
    says where alerts went; the last four characters and a short SHA-256 fingerprint match a
    value someone holds without giving it away (the token has ~140 random bits). Empty
    stays empty, so "set" and "cleared" read as such. A masked value is left as it is.
    """
    text = "" if value is None else str(value)
    if not text or text.startswith(MASKED_PREFIX):
        return text
    parts = urlsplit(text)
    where = f"{parts.scheme}://{parts.netloc[:80]}/…" if parts.scheme and parts.netloc else "…"
    fingerprint = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{MASKED_PREFIX}{where} ends {text[-4:]}, fingerprint {fingerprint}"


class MaskedSecretField(models.CharField):
    """A secret's column in a history table: every value written to it is masked first."""

    def get_prep_value(self, value: Any) -> Any:
        return super().get_prep_value(secret_mask(value))


class AuditedHistoricalRecords(HistoricalRecords):
    """simple-history's ``HistoricalRecords`` with ``masked_fields``: fields whose history
    column is a ``MaskedSecretField`` (see ``secret_mask``), so the table never holds them."""

    def __init__(self, *args: Any, masked_fields: Iterable[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.masked_fields = frozenset(masked_fields)

    def get_change_reason_for_object(
        self, instance: models.Model, history_type: str, using: str | None
    ) -> str:
        # A save that said nothing (a factory, a shell, get_or_create) was no person's.
        reason = super().get_change_reason_for_object(instance, history_type, using)
        return str(reason) if reason else AUDIT_SYSTEM

    def copy_fields(self, model: type[models.Model]) -> dict[str, models.Field[Any, Any]]:
        fields: dict[str, models.Field[Any, Any]] = super().copy_fields(model)
        for name in self.masked_fields:
            original = fields[name]
            masked = MaskedSecretField(original.verbose_name, max_length=200, blank=True)
            masked.name = name
            fields[name] = masked
        return fields


@contextmanager
def audit_as(
    instance: models.Model, *, actor: AbstractBaseUser | AnonymousUser | None, via: str
) -> Iterator[None]:
    """Saves and deletes of ``instance`` inside this block are recorded as made by ``actor``
    (None: no person) through ``via``. Only for the block: a model instance outlives a
    service call, and a later save must not be put down to this actor."""
    user = actor if actor is not None and actor.is_authenticated else None
    setattr(instance, "_history_user", user)  # noqa: B010  (simple-history's attribute)
    setattr(instance, "_change_reason", via[:100])  # noqa: B010
    try:
        yield
    finally:
        for name in ("_history_user", "_change_reason"):
            instance.__dict__.pop(name, None)


def audit_baseline_ensure(model: type[models.Model], pk: object) -> None:
    """Before the first recorded change of a row with no history yet (one made before the
    audit began: by a migration, a fixture, SQL), record its values as they are now, so that
    the first change, too, shows each field's old value."""
    history = get_history_manager_for_model(model)
    if history.filter(**{model._meta.pk.attname: pk}).exists():
        return
    current = model._default_manager.filter(pk=pk).first()
    if current is not None:
        history.bulk_history_create([current], update=True, default_change_reason=AUDIT_BASELINE)
