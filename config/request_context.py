"""Each request's id and what its one line in the request log says.

``clubos.middleware.RequestIdMiddleware`` gives every request a ``RequestContext`` before
anything else runs: a fresh UUID, returned in the ``X-Request-ID`` header and written in
the request's JSON log line (``clubos.monitoring``). A submit's ``RequestLog`` row takes the
same UUID as its key, so the header, the log line and the admin's row name one request.

The id is always ClubOS's own, never one a client or a proxy sent: it becomes the row's
primary key, which must be fresh (``requestlogs.rows`` counts on it), and a client could
otherwise choose which row its log line is filed under.
"""

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.http import HttpRequest
from rest_framework.request import Request

REQUEST_ID_HEADER = "X-Request-ID"


@dataclass(slots=True)
class RequestContext:
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    started: float = field(default_factory=time.perf_counter)
    outcome: dict[str, Any] | None = None
    """A submit's route, status and timings once its row is final (``requestlogs.metrics``),
    for its log line."""


def request_context_of(request: HttpRequest | Request) -> RequestContext:
    """The request's context, as the middleware set it (DRF's request reads it from Django's);
    a request built without the middleware (a test's ``RequestFactory``) gets one now."""
    context = getattr(request, "clubos_context", None)
    if context is None:
        context = RequestContext()
        django_request = request._request if isinstance(request, Request) else request
        django_request.clubos_context = context  # type: ignore[attr-defined]
    return context
