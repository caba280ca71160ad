"""Cached reads of the system configuration.

The request path never queries the database for config when the cache is warm. The
cached value is a plain frozen dataclass (cheap to unpickle, impossible to save by
mistake). A cache outage falls back to the database: config must never be the reason a
request fails.
"""

import dataclasses
from dataclasses import dataclass

from django.conf import settings

from config.caching import SharedSnapshot
from config.models import SystemConfig

CONFIG_CACHE_KEY = "config:system:v3"
CONFIG_CACHE_TTL_S = 60


@dataclass(frozen=True, slots=True)
class ConfigSnapshot:
    routing_strategy: str
    confidence_threshold: float
    llm_routing_enabled: bool
    llm_routing_model: str
    emergency_policy: str
    default_route_slug: str
    default_assistant_model: str
    assistant_timeout_s: float
    assistant_retries: int
    response_cache_enabled: bool
    response_cache_ttl_s: int
    slack_webhook_url: str
    slack_on_emergency: bool
    slack_on_failure: bool
    slack_on_negative_feedback: bool
    slack_on_escalation: bool
    # The admin's throttle rates; "" means the server default (config.throttling).
    throttle_submit_rate: str
    throttle_token_address_rate: str
    throttle_token_username_rate: str

    @classmethod
    def from_model(cls, row: SystemConfig) -> "ConfigSnapshot":
        values = {f.name: getattr(row, f.name) for f in dataclasses.fields(cls)}
        if not values["slack_webhook_url"]:
            values["slack_webhook_url"] = settings.SLACK_WEBHOOK_URL
        return cls(**values)


def system_config_load() -> SystemConfig:
    """The config row from the database, created with defaults if it is missing."""
    row, _ = SystemConfig.objects.get_or_create(pk=SystemConfig.SINGLETON_PK)
    return row


def _config_build() -> ConfigSnapshot:
    return ConfigSnapshot.from_model(system_config_load())


system_config_snapshot: SharedSnapshot[ConfigSnapshot] = SharedSnapshot(
    CONFIG_CACHE_KEY, CONFIG_CACHE_TTL_S, _config_build, ConfigSnapshot
)


def system_config_get() -> ConfigSnapshot:
    """The current system configuration: this process's copy (checked against the shared
    cache at most once a second, see ``config.caching``), else the database."""
    return system_config_snapshot.get()


async def system_config_aget() -> ConfigSnapshot:
    """``system_config_get`` for the event loop (``SharedSnapshot.aget``)."""
    return await system_config_snapshot.aget()
