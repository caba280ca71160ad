"""Writes to the system configuration. Every change invalidates the cached copy and is
recorded in its history (who, through what, every field's new value: ``config.audit``)."""

import logging
from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction

from config.audit import AUDIT_SYSTEM, audit_as, audit_baseline_ensure
from config.models import SystemConfig
from config.selectors import system_config_load, system_config_snapshot

logger = logging.getLogger(__name__)


def system_config_invalidate() -> None:
    """Drop the cached config so the next request on every worker reads the new row."""
    system_config_snapshot.invalidate()


@transaction.atomic
def system_config_update(
    *,
    config: SystemConfig | None = None,
    actor: AbstractBaseUser | AnonymousUser | None = None,
    via: str = AUDIT_SYSTEM,
    **changes: Any,
) -> SystemConfig:
    """Apply ``changes`` to the config row (or save ``config`` as edited), validated, and
    record the change as made by ``actor`` (None: no person) through ``via``."""
    row = config if config is not None else system_config_load()
    for field, value in changes.items():
        if not hasattr(row, field):
            raise TypeError(f"SystemConfig has no field {field!r}")
        setattr(row, field, value)
    row.pk = SystemConfig.SINGLETON_PK
    row.full_clean()
    audit_baseline_ensure(SystemConfig, row.pk)
    with audit_as(row, actor=actor, via=via):
        row.save()
    # Now, so reads later in this transaction see the change; on commit, so a reader that
    # cached the old row while we were writing cannot keep it for the next 60 s.
    system_config_invalidate()
    transaction.on_commit(system_config_invalidate)
    return row
