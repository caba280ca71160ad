"""The OpenAPI description of the token scheme (drf-spectacular finds it by its class)."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.plumbing import build_bearer_security_scheme_object


class CachedTokenScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.CachedTokenAuthentication"
    # The name the schema had with DRF's tokens: clients generated from it keep working.
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        prefix = "Token"  # knox's AUTH_HEADER_PREFIX (clubos/settings.py), as DRF's was
        return build_bearer_security_scheme_object(header_name="Authorization", token_prefix=prefix)
