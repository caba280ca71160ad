"""API plumbing shared by every app's endpoints."""

import logging
from typing import Any

import psycopg
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import InterfaceError, OperationalError
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

logger = logging.getLogger(__name__)

DATABASE_RETRY_AFTER_S = 5


class DatabaseUnavailable(APIException):
    status_code = 503
    default_detail = (
        "The request log is unavailable right now, so nothing was done. Try again in a moment."
    )
    default_code = "database_unavailable"


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's handler, plus: a Django ValidationError from a service is a 400, and a database
    that cannot be reached a 503, not a 500."""
    if isinstance(exc, DjangoValidationError):
        detail: Any = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = ValidationError(detail=detail)
    elif isinstance(exc, OperationalError | InterfaceError | psycopg.OperationalError):
        logger.warning("database unavailable: %s: %s", type(exc).__name__, exc)
        response = drf_exception_handler(DatabaseUnavailable(), context)
        if response is not None:
            response["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response
    return drf_exception_handler(exc, context)
