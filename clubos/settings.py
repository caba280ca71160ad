"""ClubOS settings: the one module that reads the environment.

With no environment set ClubOS runs on the embedded default: SQLite, the local-memory
cache and the offline assistant backend. ``DATABASE_URL``, ``REDIS_URL`` and
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` switch to the real services.
"""

import ipaddress
import os
import tempfile
from datetime import timedelta
from pathlib import Path

import environ
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

DEBUG = env.bool("DJANGO_DEBUG", default=False)

# A secret never has a default outside debug mode: a production process without
# DJANGO_SECRET_KEY refuses to start rather than sign sessions with a known key.
if DEBUG:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-debug-only-key-do-not-deploy")
else:
    SECRET_KEY = env.str("DJANGO_SECRET_KEY")

ALLOWED_HOSTS = env.list(
    "DJANGO_ALLOWED_HOSTS",
    default=["127.0.0.1", "localhost", "[::1]", "testserver"]
    if DEBUG
    else ["127.0.0.1", "localhost"],
)
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    # Django's admin on ClubOS's site (clubos/admin_site.py).
    "clubos.admin_site.ClubOSAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",
    "django.contrib.staticfiles",
    "rest_framework",
    # DRF's clear-text tokens: none left (accounts/migrations/0001 converted them to knox's,
    # its admin is unregistered); installed because applied migrations depend on its own.
    "rest_framework.authtoken",
    "knox",
    "adrf",
    "axes",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_tasks_db",
    # The audit trail of routes and the system configuration (config/audit.py).
    "simple_history",
    "clubos",
    "accounts",
    "config",
    "routing",
    "assistants",
    "requestlogs",
]

# Django's own middleware, async-capable (clubos/middleware.py), and ServeStatic (WhiteNoise's
# async fork): under the ASGI server no middleware costs a request a trip to a thread.
MIDDLEWARE = [
    # First: every response carries the request's id, and every request gets its log line.
    "clubos.middleware.RequestIdMiddleware",
    "clubos.middleware.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "clubos.middleware.ContentSecurityPolicyMiddleware",
    "clubos.middleware.RequestBodyLimitMiddleware",
    "clubos.middleware.SessionMiddleware",
    "clubos.middleware.CommonMiddleware",
    "clubos.middleware.CsrfViewMiddleware",
    "clubos.middleware.AuthenticationMiddleware",
    "clubos.middleware.MessageMiddleware",
    "clubos.middleware.XFrameOptionsMiddleware",
    # Async-capable: it only looks at a flag after the view, on the loop; a lockout response
    # (rare) is built in a thread.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "clubos.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
            ],
        },
    },
]

ASGI_APPLICATION = "clubos.asgi.application"

# --- Database -----------------------------------------------------------------------
# How long a request waits for a pooled connection (both pools: the ORM's and the event
# loop's) before it is answered 503: long enough for a burst, short enough that a database
# out of reach does not hold requests.
DATABASE_POOL_TIMEOUT_S = env.float("DATABASE_POOL_TIMEOUT_S", default=3.0)
# The event loop's writes of the request log (config/db_async.py) give up after this long,
# a connection's checkout included.
DATABASE_STATEMENT_TIMEOUT_S = env.float("DATABASE_STATEMENT_TIMEOUT_S", default=4.0)
# A pool that cannot connect retries with a growing backoff (1, 2, 4... s); it gives up after
# this long and the next request that needs a connection starts afresh. psycopg's default
# (300 s) let the backoff reach a minute: a database back for 30 s still got no connection.
DATABASE_POOL_RECONNECT_TIMEOUT_S = env.float("DATABASE_POOL_RECONNECT_TIMEOUT_S", default=5.0)
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg's pool (one per process) by default: a request holds a connection only for its
    # two writes and gives it back while it waits on the model, so 500 concurrent streams
    # need a few dozen connections. Persistent connections, one per thread, ran PostgreSQL
    # out of connections at 50 concurrent clients (bench/README.md).
    # --- Database outages ---
    # A database out of reach is a 503 in seconds, never a request that hangs: a new
    # connection gives up after DATABASE_CONNECT_TIMEOUT_S (libpq's minimum is 2 s), and the
    # kernel drops a connection whose packets go unanswered (a network partition) after
    # tcp_user_timeout, or an idle one after the keepalive probes.
    DATABASES["default"]["OPTIONS"] = {
        "connect_timeout": env.int("DATABASE_CONNECT_TIMEOUT_S", default=2),
        "tcp_user_timeout": 10_000,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 2,
        "keepalives_count": 3,
    }
    if env.bool("DATABASE_POOL", default=True):
        from config.db_pool import db_pool_check_connection

        DATABASES["default"]["OPTIONS"]["pool"] = {
            "min_size": env.int("DATABASE_POOL_MIN", default=2),
            "max_size": env.int("DATABASE_POOL_MAX", default=20),
            "timeout": DATABASE_POOL_TIMEOUT_S,
            "reconnect_timeout": DATABASE_POOL_RECONNECT_TIMEOUT_S,
            # After an outage every idle pooled connection is dead: each is checked (one
            # round trip) as it is handed out, and the dead ones replaced (config/db_pool.py).
            # Django would not retry a query on a connection that broke under it.
            "check": db_pool_check_connection,
        }
        DATABASES["default"]["CONN_MAX_AGE"] = 0
    else:
        DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=600)
        # A health check is one more statement on every request; off unless asked for.
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool(
            "DATABASE_CONN_HEALTH_CHECKS", default=False
        )
else:
    # SQLite: wait for the writer lock instead of failing at once under concurrent requests.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )
    # Tests get a file too, not Django's shared in-memory database: there a reader and a
    # writer on two connections (a live server's thread and the test) fail at once with
    # "table is locked" instead of waiting as SQLite does for the app.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"clubos-test-{os.getpid()}.sqlite3")
    }

# PostgreSQL only: each server worker's event loop has a small pool of its own for the request
# log's two writes (config/db_async.py), so that they go out from the loop without a trip to a
# thread. 0 switches it off: the ORM writes them from a thread.
DATABASE_ASYNC_POOL_MAX = env.int("DATABASE_ASYNC_POOL_MAX", default=10)
# That pool prepares its statements on the server. Behind a pooler in transaction mode without
# prepared-statement support, set this to 0.
DATABASE_ASYNC_PREPARE = env.bool("DATABASE_ASYNC_PREPARE", default=True)

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "clubos",
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                # A Redis outage must cost a request milliseconds, not seconds: the
                # selectors fall back to the database when the cache raises.
                "SOCKET_CONNECT_TIMEOUT": 0.25,
                "SOCKET_TIMEOUT": 0.25,
                "CONNECTION_POOL_KWARGS": {"max_connections": 200},
            },
        }
    }
else:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": "clubos",
        }
    }

# --- Sessions ---
# In the database only: a Redis outage must not log anyone out or turn the console, the admin
# or the login into a 500. cached_db read a session ~0.3-0.5 ms faster with Redis up, but
# fails with Redis down, and a version that caught the cache's errors would serve stale
# sessions once Redis came back (one logged out during the outage would be logged in again).
SESSION_ENGINE = "django.contrib.sessions.backends.db"

# --- API tokens (accounts/) -----------------------------------------------------------
# Tokens are django-rest-knox's: only a SHA-512 digest is stored, and each expires.
# API_TOKEN_TTL: how long a new token lives, in seconds or with a unit ("30d", "12h", "90m").
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_ttl = env.str("API_TOKEN_TTL", default="30d").strip().lower()
_unit = _DURATION_UNITS.get(_ttl[-1:], 0)
API_TOKEN_TTL = timedelta(seconds=float(_ttl[:-1]) * _unit if _unit else float(_ttl))
if API_TOKEN_TTL.total_seconds() <= 0:
    raise ValueError("API_TOKEN_TTL must be positive: tokens always expire")
REST_KNOX = {"TOKEN_TTL": API_TOKEN_TTL, "AUTH_HEADER_PREFIX": "Token", "AUTO_REFRESH": False}
# How long a process trusts a token it has checked (accounts.authentication) while the shared
# auth version in Redis is unchanged: any token revoked or user changed anywhere moves that
# version, and every worker checks it at least every 0.2 s. Bounds what a change that skips
# Django's signals (a bulk UPDATE in SQL) can take to be seen.
API_TOKEN_TRUST_S = env.float("API_TOKEN_TRUST_S", default=60.0)
# Without the shared version (no Redis, or Redis unreachable): how long a process trusts a
# checked token. 0 checks every request against the database.
API_TOKEN_CACHE_S = env.float("API_TOKEN_CACHE_S", default=1.0)

# --- Auth -----------------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "console"
LOGOUT_REDIRECT_URL = "login"

# --- I18N / time ----------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("DJANGO_TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
SERVESTATIC_USE_FINDERS = True
# A file missing from the manifest (collectstatic not run yet, as in tests) is served
# under its plain name rather than failing the page.
SERVESTATIC_MANIFEST_STRICT = False
SERVESTATIC_AUTOREFRESH = DEBUG

# --- REST framework -------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.authentication.CachedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_PARSER_CLASSES": [
        "config.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.PageNumberPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"]
    + (["rest_framework.renderers.BrowsableAPIRenderer"] if DEBUG else []),
    "EXCEPTION_HANDLER": "clubos.api.exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "ClubOS API",
    "DESCRIPTION": "The request desk of ClubOS: submit what is going on, get the right "
    "assistant's answer, and read the request log and its timings.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
}

# --- Throttling, login lockout and client addresses (config/throttling.py) -----------
# How many reverse proxies in front of the app append to X-Forwarded-For. 0, the default:
# the client address is the connection's peer and X-Forwarded-For is ignored, so a client
# cannot choose the address its limits are counted against. Behind one nginx: 1. Only set it
# when the app's port is reachable through the proxies alone. The one value both DRF's
# throttles (NUM_PROXIES, whose own default None would believe any X-Forwarded-For) and
# Axes use (config.throttling.client_address).
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
REST_FRAMEWORK["NUM_PROXIES"] = TRUSTED_PROXY_COUNT
# Rates "N/s|min|hour|day"; the admin's System configuration overrides each; "" switches one
# off. Submits: a person composes and reads each answer, a few a minute at most; 60/min per
# user (one a second, sustained) leaves a shared kiosk or integration account ten times that
# headroom and stops a runaway script within its first minute. Token: 10 per address and 5
# per username a minute, so a password is guessed at most 5 times before a wait (Axes then
# locks the account after AXES_FAILURE_LIMIT failures).
REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"] = {
    "submit": env.str("THROTTLE_SUBMIT_RATE", default="60/min") or None,
    "token_address": env.str("THROTTLE_TOKEN_ADDRESS_RATE", default="10/min") or None,
    "token_username": env.str("THROTTLE_TOKEN_USERNAME_RATE", default="5/min") or None,
}
# django-axes: after AXES_FAILURE_LIMIT failed logins (admin, console or token endpoint) from
# one address, or for one username, further attempts are refused for the cool-off. An admin
# unlocks sooner under Axes > Access attempts (delete the rows) or with
# `manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS` / `axes_reset`.
AUTHENTICATION_BACKENDS = [
    "config.throttling.LoginLockoutBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("AXES_COOLOFF_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["ip_address", "username"]
AXES_RESET_ON_SUCCESS = True
# The failure count lives in the database (Axes' database handler), never in the cache: a
# Redis outage must not turn a login into a 500.
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_CLIENT_IP_CALLABLE = "config.throttling.client_address"
AXES_LOCKOUT_CALLABLE = "config.throttling.login_lockout_response"

# --- Upstream model and integrations --------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
# Which assistant backend a route with no backend of its own uses. With a key the
# Responses API; with no key the offline backend, so a fresh install is useful.
ASSISTANT_BACKEND = env.str(
    "ASSISTANT_BACKEND", default="openai-responses" if OPENAI_API_KEY else "offline"
)
SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")

# --- Circuit breaker (assistants/breaker.py) ---
# After this many consecutive upstream failures a worker stops calling the model for the
# cooldown; then one trial call decides whether it closes again.
ASSISTANT_BREAKER_THRESHOLD = env.int("ASSISTANT_BREAKER_THRESHOLD", default=5)
# The longest wait between trial calls while the upstream keeps failing; the first wait is
# ASSISTANT_BREAKER_FIRST_COOLDOWN_S and each failed trial makes the next 1.5 times longer.
ASSISTANT_BREAKER_COOLDOWN_S = env.float("ASSISTANT_BREAKER_COOLDOWN_S", default=20.0)
ASSISTANT_BREAKER_FIRST_COOLDOWN_S = env.float("ASSISTANT_BREAKER_FIRST_COOLDOWN_S", default=1.0)

# --- Background tasks ---
# Django's tasks framework on django-tasks-db: a task is a row in this database, written in
# the transaction of the work that queues it (an alert and its task: both or neither), run by
# `manage.py tasks_worker` (bench/README.md, "Background tasks", for why not RQ).
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}
# How often an idle worker looks for a due task (one indexed SELECT).
TASKS_WORKER_INTERVAL_S = env.float("TASKS_WORKER_INTERVAL_S", default=0.2)
# How often the worker marks rows a killed server left `received` as `abandoned`, and queues
# again the alerts a killed worker left half-sent.
TASKS_SWEEP_INTERVAL_S = env.float("TASKS_SWEEP_INTERVAL_S", default=10.0)
# A `received` row is abandoned once older than the longest request can take (LLM routing
# + the longest assistant deadline) plus this margin.
REQUEST_ABANDONED_MARGIN_S = env.float("REQUEST_ABANDONED_MARGIN_S", default=10.0)
# A Slack alert's tries: the first at once, then one after each of these delays (5 tries).
SLACK_ALERT_RETRY_DELAYS_S = [
    float(d) for d in env.list("SLACK_ALERT_RETRY_DELAYS_S", default=["1", "5", "30", "120"])
]
# A try in progress longer than this (its post gives up after 3 s) died with its worker; the
# sweep queues an alert again once its try is this overdue.
SLACK_ALERT_LEASE_S = env.float("SLACK_ALERT_LEASE_S", default=10.0)
SLACK_ALERT_OVERDUE_S = env.float("SLACK_ALERT_OVERDUE_S", default=5.0)

# --- Request log retention (requestlogs.services.request_logs_delete_older_than) ---
# Requests older than this many days are deleted, with their alerts, by the task worker's
# sweep and by `manage.py purge_request_logs`; 0 keeps every request (the default: deleting
# history is the operator's choice).
REQUEST_LOG_RETENTION_DAYS = env.float("REQUEST_LOG_RETENTION_DAYS", default=0.0)
# How often the task worker runs it: one worker per interval, however many run (a lease in
# the shared cache). A backlog is worked off a few seconds per sweep, never a long lock.
REQUEST_LOG_RETENTION_INTERVAL_S = env.float("REQUEST_LOG_RETENTION_INTERVAL_S", default=3600.0)
# Rows per batch: each batch is one short transaction.
REQUEST_LOG_RETENTION_BATCH = env.int("REQUEST_LOG_RETENTION_BATCH", default=1000)

# --- Config audit (config/audit.py, django-simple-history) ---
# The history is a record, not an undo button: old versions are viewed, never saved back
# (a masked secret would be written over the real one).
SIMPLE_HISTORY_REVERT_DISABLED = True

# --- Logging --------------------------------------------------------------------------
# Each request ends with one JSON line on the `clubos.requests` logger (clubos/monitoring.py):
# its id (X-Request-ID), method, path, status, user id, client address and, for a submit, its
# route, routing source, final status and timings. On stderr beside the plain log;
# REQUEST_LOG_LEVEL=WARNING switches the lines off.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "fmt": ["levelname", "name", "message"],
            "rename_fields": {"levelname": "level", "name": "logger"},
            "timestamp": "time",
        },
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain"},
        "requests": {"class": "logging.StreamHandler", "formatter": "json"},
    },
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "clubos.requests": {
            "handlers": ["requests"],
            "level": env.str("REQUEST_LOG_LEVEL", default="INFO"),
            "propagate": False,
        },
    },
}

# --- Metrics (clubos/monitoring.py, config/metrics.py) ---------------------------------
# GET /metrics, Prometheus' text format. Every check that is set must pass: a bearer token
# (`Authorization: Bearer <token>`) and/or the client's address (by TRUSTED_PROXY_COUNT's
# rule, as the throttles) in a list of addresses or networks. With neither set the endpoint
# is off (404), except that debug mode (make run) serves it to loopback.
METRICS_BEARER_TOKEN = env.str("METRICS_BEARER_TOKEN", default="")
METRICS_ALLOWED_IPS = [
    ipaddress.ip_network(item.strip(), strict=False)
    for item in env.list(
        "METRICS_ALLOWED_IPS",
        default=["127.0.0.1", "::1"] if DEBUG and not METRICS_BEARER_TOKEN else [],
    )
    if item.strip()
]
# Set (by gunicorn.conf.py, or by you) when several processes serve: prometheus-client's
# multiprocess mode, each worker's values in files there, added up at each scrape.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
# Multiprocess: how often each worker writes its pools', breakers' and process's state for
# the scrapes another worker answers (the answering worker reads its own at the scrape).
METRICS_REFRESH_S = env.float("METRICS_REFRESH_S", default=5.0)

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_SAMESITE = "Lax"
    SECURE_CONTENT_TYPE_NOSNIFF = True

# --- Security: HTTPS, cookies, Content Security Policy, body size ----------------------
# Secure by default whenever DEBUG is off; each switch has its own variable so a plain-HTTP
# test setup (the test suite, the bench, `make serve` on loopback) can turn it off.
# ClubOS runs behind a TLS-terminating reverse proxy, which must set X-Forwarded-Proto itself
# (overwriting whatever a client sent): that header is how Django knows a request was HTTPS.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
# A load balancer's health check reaches the app directly over plain HTTP, with no
# X-Forwarded-Proto: a redirect to https would count as unhealthy. It carries no cookie and
# no secret, so it is served over either.
# Prometheus scrapes the app's port directly too (a redirect to https, which the app itself
# does not speak, would fail every scrape); /metrics has its own protection (above).
SECURE_REDIRECT_EXEMPT = [r"^api/v1/health/$", r"^metrics$"]
# HSTS (sent on HTTPS responses only). Preload asks the browsers' preload list to accept the
# domain if it is submitted there, which is a separate, manual step.
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=True)
# Session and CSRF cookies only over HTTPS.
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
# Django's check --deploy looks for its own middleware by dotted path, and ours are subclasses
# (clubos/middleware.py): clubos/checks.py runs the same checks against the subclasses and
# reports under clubos.security.* instead, so nothing is hidden by silencing these three.
SILENCED_SYSTEM_CHECKS = ["security.W001", "security.W002", "security.W003"]
# SQLite builds the request log's covering index (reqlog_time_figures) without its INCLUDE
# columns, as a plain index: expected on the embedded default, only PostgreSQL needs them.
SILENCED_SYSTEM_CHECKS += ["models.W040"]

# Django's Content Security Policy on every response, debug or not. No inline script or
# style in our templates; Django's admin marks its few inline ones with the per-response
# nonce (the csp context processor), which is sent only on a page that used it.
_CSP_POLICY: dict[str, list[str]] = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF, CSP.NONCE],
    "img-src": [CSP.SELF, "data:"],
    "connect-src": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
    "base-uri": [CSP.SELF],
    "form-action": [CSP.SELF],
    "object-src": [CSP.NONE],
}
# The ReDoc page alone (/api/v1/redoc/) is wider: ReDoc writes inline styles as its bundle
# loads, before any nonce can reach it, builds its search worker from a blob: URL and shows
# Redocly's logo from their CDN. Its scripts are held to 'self' as everywhere.
CSP_REDOC_POLICY: dict[str, list[str]] = {
    **_CSP_POLICY,
    "style-src": [CSP.SELF, CSP.UNSAFE_INLINE],
    "worker-src": [CSP.SELF, "blob:"],
    "img-src": [CSP.SELF, "data:", "https://cdn.redoc.ly"],
}
# DJANGO_CSP_REPORT_ONLY=1 reports violations to the browser console without blocking.
if env.bool("DJANGO_CSP_REPORT_ONLY", default=False):
    SECURE_CSP = {}
    SECURE_CSP_REPORT_ONLY = _CSP_POLICY
else:
    SECURE_CSP = _CSP_POLICY

# Request bodies (clubos.middleware.RequestBodyLimitMiddleware answers 413 with a message,
# before any view, with or without Content-Length). API bodies are small JSON: a submit's
# 4,000 characters are at most 48 KB even with every character \u-escaped. Forms (the admin's
# route instructions and utterances) may be larger; Django's own limit, 2.5 MB by default,
# also guards request.POST.
API_MAX_BODY_BYTES = env.int("API_MAX_BODY_BYTES", default=64 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DJANGO_DATA_UPLOAD_MAX_MEMORY_SIZE", default=1024 * 1024)
