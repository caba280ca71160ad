"""ClubOS settings: the one module that reads the environment.

With no environment set ClubOS runs on the embedded default: SQLite, the local-memory
cache and the offline assistant backend. ``DATABASE_URL``, ``REDIS_URL`` and
``OPENAI_API_KEY`` / ``OPENAI_BASE_URL`` switch to the real services.
"""

import os
import tempfile
from pathlib import Path

import environ

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
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "servestatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "adrf",
    "drf_spectacular",
    "drf_spectacular_sidecar",
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
    "clubos.middleware.SecurityMiddleware",
    "servestatic.middleware.ServeStaticMiddleware",
    "clubos.middleware.SessionMiddleware",
    "clubos.middleware.CommonMiddleware",
    "clubos.middleware.CsrfViewMiddleware",
    "clubos.middleware.AuthenticationMiddleware",
    "clubos.middleware.MessageMiddleware",
    "clubos.middleware.XFrameOptionsMiddleware",
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
            ],
        },
    },
]

ASGI_APPLICATION = "clubos.asgi.application"

# --- Database -----------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    # psycopg's pool (one per process) by default: a request holds a connection only for its
    # two writes and gives it back while it waits on the model, so 500 concurrent streams
    # need a few dozen connections. Persistent connections, one per thread, ran PostgreSQL
    # out of connections at 50 concurrent clients (bench/README.md).
    if env.bool("DATABASE_POOL", default=True):
        DATABASES["default"]["OPTIONS"] = {
            "pool": {
                "min_size": env.int("DATABASE_POOL_MIN", default=2),
                "max_size": env.int("DATABASE_POOL_MAX", default=20),
                "timeout": 10,
            }
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

SESSION_ENGINE = "django.contrib.sessions.backends.cached_db"
# How long a process trusts an API token it has checked (accounts.authentication): a token
# deleted or a user deactivated elsewhere is refused everywhere within this many seconds (in
# the process that made the change, at once). 0 checks every request.
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

# --- Upstream model and integrations --------------------------------------------------
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="") or None
# Which assistant backend a route with no backend of its own uses. With a key the
# Responses API; with no key the offline backend, so a fresh install is useful.
ASSISTANT_BACKEND = env.str(
    "ASSISTANT_BACKEND", default="openai-responses" if OPENAI_API_KEY else "offline"
)
SLACK_WEBHOOK_URL = env.str("SLACK_WEBHOOK_URL", default="")

# --- Logging --------------------------------------------------------------------------
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("DJANGO_LOG_LEVEL", default="INFO")},
    "loggers": {"httpx": {"level": "WARNING"}, "httpx2": {"level": "WARNING"}},
}

if not DEBUG:
    SESSION_COOKIE_HTTPONLY = True
    CSRF_COOKIE_SAMESITE = "Lax"
    SECURE_CONTENT_TYPE_NOSNIFF = True
