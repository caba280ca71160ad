"""The config selector: cached, invalidated on save, and never the reason a request fails."""

import socket

import pytest
from django.core.cache import caches

from config.selectors import ConfigSnapshot, system_config_get
from config.services import system_config_update

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_down(settings):
    """The cache is Redis on a port where nothing listens: every cache call raises."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
            "OPTIONS": {"SOCKET_CONNECT_TIMEOUT": 0.25, "SOCKET_TIMEOUT": 0.25},
        }
    }
    # Django's setting_changed receiver rebuilds the cache handlers for the override.
    assert caches["default"].__class__.__name__ == "RedisCache"


def test_defaults_are_the_documented_ones():
    config = system_config_get()
    assert isinstance(config, ConfigSnapshot)
    assert config.assistant_timeout_s == 15.0
    assert config.assistant_retries == 1
    assert config.response_cache_enabled is False


def test_a_warm_read_makes_no_database_query(django_assert_num_queries):
    system_config_get()
    with django_assert_num_queries(0):
        for _ in range(10):
            system_config_get()


def test_another_workers_edit_is_seen_within_a_second(monkeypatch):
    from config import caching
    from config.models import SystemConfig
    from config.selectors import CONFIG_CACHE_KEY, _config_build

    assert system_config_get().assistant_timeout_s == 15.0
    # Another worker: its own in-process copy over the same shared cache, and its write.
    other = caching.SharedSnapshot(CONFIG_CACHE_KEY, 60, _config_build, ConfigSnapshot)
    SystemConfig.objects.update(assistant_timeout_s=8.0)
    other.invalidate()
    assert system_config_get().assistant_timeout_s == 15.0  # this worker's copy, still fresh
    monkeypatch.setattr(caching, "LOCAL_FRESH_S", 0.0)
    assert system_config_get().assistant_timeout_s == 8.0
    assert other.get().assistant_timeout_s == 8.0


def test_a_warm_read_within_the_fresh_window_does_not_touch_the_cache(redis_down):
    # Redis is down: a read that reached it would rebuild from the database.
    system_config_get()
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        for _ in range(50):
            system_config_get()
    assert len(queries) == 0


def test_saving_is_seen_by_the_next_read(django_assert_num_queries):
    system_config_get()
    system_config_update(assistant_timeout_s=9.0, confidence_threshold=0.75)
    config = system_config_get()
    assert config.assistant_timeout_s == 9.0
    assert config.confidence_threshold == 0.75


def test_invalid_values_are_refused():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        system_config_update(confidence_threshold=1.5)
    assert system_config_get().confidence_threshold == 0.6


def test_slack_url_falls_back_to_the_environment(settings):
    settings.SLACK_WEBHOOK_URL = "http://127.0.0.1:9/hook"
    assert system_config_get().slack_webhook_url == "http://127.0.0.1:9/hook"
    system_config_update(slack_webhook_url="http://127.0.0.1:9/other")
    assert system_config_get().slack_webhook_url == "http://127.0.0.1:9/other"


def test_redis_down_reads_the_database(redis_down):
    system_config_update(assistant_timeout_s=7.0)
    assert system_config_get().assistant_timeout_s == 7.0


def test_redis_down_a_request_still_succeeds(redis_down):
    from asgiref.sync import async_to_sync

    from requestlogs.models import RequestStatus
    from requestlogs.pipeline import request_answer
    from requestlogs.validation import request_validate
    from routing.selectors import route_catalog_get

    request = request_validate(
        data={"text": "TrackMan frozen in bay 3"},
        user=None,
        config=system_config_get(),
        catalog=route_catalog_get(),
    )
    done = async_to_sync(request_answer)(request=request)
    assert done.log.status == RequestStatus.OK


def test_the_event_loops_read_is_this_process_copy_and_another_workers_edit_within_a_second(
    monkeypatch,
):
    from asgiref.sync import async_to_sync

    from config import caching
    from config.models import SystemConfig
    from config.selectors import CONFIG_CACHE_KEY, _config_build, system_config_aget

    assert async_to_sync(system_config_aget)().assistant_timeout_s == 15.0
    other = caching.SharedSnapshot(CONFIG_CACHE_KEY, 60, _config_build, ConfigSnapshot)
    SystemConfig.objects.update(assistant_timeout_s=8.0)
    other.invalidate()  # another worker's edit
    # Within the second: this process's copy, with no cache read (none could wait).
    monkeypatch.setattr(caching, "cache", None)
    assert async_to_sync(system_config_aget)().assistant_timeout_s == 15.0
    monkeypatch.undo()

    monkeypatch.setattr(caching, "LOCAL_FRESH_S", 0.0)  # the second has passed
    assert async_to_sync(system_config_aget)().assistant_timeout_s == 8.0
