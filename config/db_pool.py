"""The check the ORM's connection pool runs on each connection it hands out.

psycopg's own check (``ConnectionPool.check_connection``: an empty statement, one round
trip) finds a connection the database dropped. But after an outage every idle connection is
dead, and psycopg's pool sleeps with a growing backoff (0, 1, 2 s...) between two failed
checks: with three dead connections a request waited out the whole pool timeout for a 503
although the database was back. So the first failed check has the pool check all its idle
connections at once, replacing the dead ones, and the next connection handed out is live.

Imported by the settings: nothing of Django's at import time.
"""

import logging
from typing import Any

from psycopg_pool import ConnectionPool

logger = logging.getLogger(__name__)


def db_pool_check_connection(conn: Any) -> None:
    try:
        ConnectionPool.check_connection(conn)
    except Exception:
        from django.db import DEFAULT_DB_ALIAS, connections

        pool = getattr(connections[DEFAULT_DB_ALIAS], "pool", None)
        if pool is not None:
            logger.info("a pooled connection was dead: checking the pool's idle connections")
            pool.check()
        raise
