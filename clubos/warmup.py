"""Work done once per process at start-up so the first request is as fast as the rest."""

import gc
import logging

logger = logging.getLogger(__name__)

WARM_UP_TIMEOUT_S = 3.0


def warm_up() -> None:
    from config.llm import openai_client, openai_configured
    from config.selectors import system_config_get
    from routing.router import strategy_get
    from routing.selectors import route_catalog_get

    try:
        config = system_config_get()
        catalog = route_catalog_get()
        # Trains the local classifier (hybrid/local) before the first request needs it.
        strategy_get(config.routing_strategy).warm(catalog)
        # Whatever the strategy: the classifier also gives a hand-chosen route its second
        # opinion (routing.suggestion), which never trains one on a request (hybrid's is
        # the same model: nothing more to do).
        strategy_get("local").warm(catalog)
    except Exception:
        logger.warning("warm-up could not prepare routing", exc_info=True)
    if openai_configured():
        try:
            # Opens the pooled connection (TCP and TLS) that the first request will reuse.
            openai_client().with_options(timeout=WARM_UP_TIMEOUT_S).models.list()
        except Exception:
            logger.warning("warm-up could not reach the model's server", exc_info=True)
    collector_settle()


def collector_settle() -> None:
    """Move what start-up built (Django, the trained router, the clients) out of the GC's way.

    Those objects live as long as the process. Left in the collector's oldest generation,
    every full collection walks all of them again: 100-115 ms with the whole process
    stopped, measured under load, a pause every stream in the worker waits through.
    Frozen, a full collection only sees what requests allocate (15-20 ms).
    """
    gc.collect()
    gc.freeze()


async def warm_up_async() -> None:
    """On the server's event loop: open its connection to the model's server and its
    database pool (ASGI lifespan)."""
    from config.db_async import db_async_open
    from config.llm import openai_async_channel_open, openai_configured

    try:
        await db_async_open(timeout_s=WARM_UP_TIMEOUT_S)
    except Exception:
        logger.warning("warm-up could not connect the event loop to the database", exc_info=True)
    if openai_configured():
        try:
            await openai_async_channel_open(timeout_s=WARM_UP_TIMEOUT_S)
        except Exception:
            logger.warning("warm-up could not reach the model's server", exc_info=True)
