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
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import middleware as auth
from django.contrib.messages import middleware as messages
from django.contrib.sessions import middleware as sessions
from django.http import HttpRequest
from django.http.response import HttpResponseBase
from django.middleware import clickjacking, common, csrf, security

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
