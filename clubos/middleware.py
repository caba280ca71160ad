"""Django's own middleware, made async-capable: their hooks run on the event loop.

Under Django's ``ASGIHandler`` a middleware built on ``MiddlewareMixin`` runs each of its
hooks (``process_request``, ``process_view``, ``process_response``) through
``sync_to_async``: a trip to a thread and back, a dozen per request for this project's
chain, each waiting behind every other stream the worker carries (bench/README.md). The
hooks of these middleware only compute (headers, cookies, a redirect, the CSRF check of a
body already read), so here they are Django's own methods, called on the loop. The one
exception: a session that was read or written during the request may be saved by the
session and messages middleware, which is database or cache work, so their response hook
takes the thread then, as under Django; should the client leave during that trip, the
response, which Django would then drop unclosed, is closed.

Under the sync handler (the test client) each runs exactly as Django's.
"""

import asyncio
import functools
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from django.middleware import clickjacking, common, csp, csrf, security
from django.shortcuts import render
from django.utils.csp import CSP, build_policy
from django.utils.deprecation import MiddlewareMixin

from clubos.monitoring import request_line_log
from config.request_context import REQUEST_ID_HEADER, RequestContext, request_context_of
from config.threads import to_the_end


class OnTheLoop:
    """Run a ``MiddlewareMixin`` middleware's hooks on the event loop."""

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        response = None
        if hasattr(self, "process_request"):
            response = self.process_request(request)
        response = response or await self.get_response(request)  # type: ignore[attr-defined]
        if hasattr(self, "process_response"):
            if self.response_needs_thread(request):
                try:
                    return await sync_to_async(self.process_response)(request, response)
                except asyncio.CancelledError:
                    # The client left during the trip: Django will neither send nor close
                    # this response. Closed here, its own clean-up runs (an event stream's
                    # request is recorded as abandoned).
                    await to_the_end(sync_to_async(response.close)())
                    raise
            response = self.process_response(request, response)
        return response

    def response_needs_thread(self, request: HttpRequest) -> bool:
        return False


class SessionWritesInAThread(OnTheLoop):
    def response_needs_thread(self, request: HttpRequest) -> bool:
        # A session nobody touched is never saved (and SESSION_SAVE_EVERY_REQUEST is off).
        session = getattr(request, "session", None)
        return settings.SESSION_SAVE_EVERY_REQUEST or bool(getattr(session, "accessed", False))


class SecurityMiddleware(OnTheLoop, security.SecurityMiddleware): ...


class SessionMiddleware(SessionWritesInAThread, sessions.SessionMiddleware): ...


class CommonMiddleware(OnTheLoop, common.CommonMiddleware): ...


class CsrfViewMiddleware(OnTheLoop, csrf.CsrfViewMiddleware):
    async def process_view(  # type: ignore[override]
        self, request: HttpRequest, callback: Any, callback_args: Any, callback_kwargs: Any
    ) -> HttpResponseBase | None:
        # Async, so that Django's handler calls it on the loop. It reads the CSRF cookie
        # and, for a form post, the body already read: no I/O (CSRF_USE_SESSIONS is off).
        return super().process_view(request, callback, callback_args, callback_kwargs)


class AuthenticationMiddleware(OnTheLoop, auth.AuthenticationMiddleware): ...


class MessageMiddleware(SessionWritesInAThread, messages.MessageMiddleware):
    def response_needs_thread(self, request: HttpRequest) -> bool:
        # Messages read or added may be stored in the session.
        storage = getattr(request, "_messages", None)
        pending = storage is not None and (storage.used or storage.added_new)
        return pending or super().response_needs_thread(request)


class XFrameOptionsMiddleware(OnTheLoop, clickjacking.XFrameOptionsMiddleware): ...


class ContentSecurityPolicyMiddleware(OnTheLoop, csp.ContentSecurityPolicyMiddleware):
    """Django's, on the loop. The header of a response that used no nonce (every API answer,
    the console) is the same string every time: built once per policy, not per response."""

    HEADERS = (
        (CSP.HEADER_ENFORCE, "_csp_config", "SECURE_CSP"),
        (CSP.HEADER_REPORT_ONLY, "_csp_ro_config", "SECURE_CSP_REPORT_ONLY"),
    )

    def __init__(self, get_response: Any) -> None:
        super().__init__(get_response)
        # id(policy) -> (policy, header): the policy is kept so that its id is not reused.
        self._built: dict[int, tuple[dict[str, Any], str]] = {}

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if csp.get_nonce(request):  # this page used its nonce: Django builds the header
            return super().process_response(request, response)
        for header, attribute, setting in self.HEADERS:
            # A view's own policy (csp_override), even an empty one, wins, as in Django.
            config = (
                getattr(response, attribute)
                if hasattr(response, attribute)
                else getattr(settings, setting)
            )
            if config and header not in response:
                response.headers[str(header)] = self._policy(config)
        return response

    def _policy(self, config: dict[str, Any]) -> str:
        built = self._built.get(id(config))
        if built is None or built[0] is not config:
            built = self._built[id(config)] = (config, build_policy(config))
        return built[1]


class RequestBodyLimitMiddleware(OnTheLoop, MiddlewareMixin):
    """A request body over the limit is a 413 with a message, before any view reads it.

    Django checks ``DATA_UPLOAD_MAX_MEMORY_SIZE`` only when ``request.body`` or
    ``request.POST`` is read, and DRF's parsers read the stream directly, so a JSON body of
    any size reached the parser. API bodies have their own, smaller limit
    (``API_MAX_BODY_BYTES``). A body sent without Content-Length (chunked) has already been
    read by the ASGI handler: it is measured here, and given its length so that DRF, which
    takes a body with no Content-Length for an empty one, parses it.
    """

    def process_request(self, request: HttpRequest) -> HttpResponse | None:
        api = request.path_info.startswith("/api/")
        limit: int | None = (
            settings.API_MAX_BODY_BYTES if api else settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        )
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if not length and request.method not in ("GET", "HEAD", "OPTIONS", "TRACE"):
            try:
                length = len(request.body)
            except RequestDataTooBig:
                return self.too_big(request, api, settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
            if length:
                request.META["CONTENT_LENGTH"] = str(length)
        if limit is not None and length > limit:
            return self.too_big(request, api, limit)
        return None

    @staticmethod
    def too_big(request: HttpRequest, api: bool, limit: int | None) -> HttpResponse:
        size = f"{limit // 1024:,} KB" if limit else "the limit"
        if api:
            return JsonResponse(
                {"detail": f"The request body is too large: this endpoint accepts up to {size}."},
                status=413,
            )
        return render(request, "413.html", {"limit": size}, status=413)


class RequestIdMiddleware:
    """First in the chain: gives the request its id (``config.request_context``), returns it
    as ``X-Request-ID`` on every response (a stream's headers included, sent before its
    first event) and writes the request's JSON log line when Django closes the response
    (``clubos.monitoring.request_line_log``): after a stream's last event, or once its client
    has gone, so the line carries the submit's final status and timings.

    A request cancelled before it had a response (its client left mid-view) is logged as
    status 499, nginx's "client closed request"."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Any) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        context = request_context_of(request)
        return self._answered(request, context, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        context = request_context_of(request)
        try:
            response = await self.get_response(request)
        except asyncio.CancelledError:
            request_line_log(request, context, CLIENT_CLOSED_REQUEST)
            raise
        return self._answered(request, context, response)

    @staticmethod
    def _answered(
        request: HttpRequest, context: RequestContext, response: HttpResponseBase
    ) -> HttpResponseBase:
        response[REQUEST_ID_HEADER] = str(context.id)
        # Run by response.close(), after the resources the view registered (an event
        # stream's own close, which finishes its row).
        response._resource_closers.append(  # type: ignore[attr-defined]
            functools.partial(request_line_log, request, context, response.status_code)
        )
        return response


CLIENT_CLOSED_REQUEST = 499
