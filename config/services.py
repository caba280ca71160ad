"""Writes to the system configuration. Every change invalidates the cached copy."""

import logging
from typing import Any

from django.db import transaction

from config.models import SystemConfig
from config.selectors import system_config_load, system_config_snapshot

logger = logging.getLogger(__name__)


def system_config_invalidate() -> None:
    """Drop the cached config so the next request on every worker reads the new row."""
    system_config_snapshot.invalidate()


@transaction.atomic
def system_config_update(*, config: SystemConfig | None = None, **changes: Any) -> SystemConfig:
    """Apply ``changes`` to the config row (or save ``config`` as edited), validated."""
    row = config if config is not None else system_config_load()
    for field, value in changes.items():
        if not hasattr(row, field):
            raise TypeError(f"SystemConfig has no field {field!r}")
        setattr(row, field, value)
    row.pk = SystemConfig.SINGLETON_PK
    row.full_clean()
    row.save()
    # Now, so reads later in this transaction see the change; on commit, so a reader that
    # cached the old row while we were writing cannot keep it for the next 60 s.
    system_config_invalidate()
    transaction.on_commit(system_config_invalidate)
    return row
