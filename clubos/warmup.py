"""Work done once per process at start-up so the first request is as fast as the rest."""

import logging

logger = logging.getLogger(__name__)


def warm_up() -> None:
    from config.llm import openai_client, openai_configured
    from config.selectors import system_config_get
    from routing.selectors import route_catalog_get

    try:
        system_config_get()
        route_catalog_get()
    except Exception:
        logger.warning("warm-up could not read config or routes", exc_info=True)
    if openai_configured():
        openai_client()
