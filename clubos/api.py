"""API plumbing shared by every app's endpoints."""

import logging
from typing import Any

import psycopg
from django.core.exceptions import RequestDataTooBig
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import DataError, InterfaceError, OperationalError
from rest_framework.exceptions import APIException, Throttled, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.throttling import throttled_message

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 5


class RequestTooLarge(APIException):
    status_code = 413
    default_detail = "The request body is too large for this endpoint."
    default_code = "request_too_large"


class DatabaseUnavailable(APIException):
    status_code = 503
    default_detail = (
        "The request log is unavailable right now, so nothing was done. Try again in a moment."
    )
    default_code = "database_unavailable"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a Django ValidationError from a service is a 400, a body over
    Django's size limit a 413, a value the database refuses a 400, and a database that
    cannot be reached a 503, not a 500."""
    if isinstance(exc, RequestDataTooBig):
        # Django's own limit (DATA_UPLOAD_MAX_MEMORY_SIZE), met by a form body a parser reads;
        # clubos.middleware.RequestBodyLimitMiddleware usually answers first.
        exc = RequestTooLarge()
    elif isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail=detail)
    elif isinstance(exc, DataError | psycopg.DataError):
        # Input the validation let through and the database refused (a NUL in a text
        # PostgreSQL stores, a value out of its range): the client's, so a 400. Logged with
        # its traceback: the validation that should have caught it is missing somewhere.
        logger.warning("the database refused a value: %s", exc, exc_info=exc)
        exc = ValidationError(
            {"detail": ["A value in this request cannot be stored (a NUL character, say)."]}
        )
    elif isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError):
        logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        response = drf_exception_handler(DatabaseUnavailable(), context)
        if response is not None:
            response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    response = drf_exception_handler(exc, context)
    if isinstance(exc, Throttled) and response is not None:
        # DRF has set Retry-After; the message says the same in words.
        response.data = {"detail": throttled_message(getattr(exc, "wait", None))}
    return response
