"""DRF's JSON parser, with one more way a body can be unreadable."""

from collections.abc import Mapping
from typing import IO, Any

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's ``JSONParser``; a body nested deeper than Python's parser can follow (a few
    thousand ``[``) is a 400 like any other malformed JSON, not a ``RecursionError``."""

    def parse(
        self,
        stream: IO[Any],
        media_type: str | None = None,
        parser_context: Mapping[str, Any] | None = None,
    ) -> Any:
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - nested too deeply") from None
