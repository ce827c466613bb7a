"""The exception tree of the plugin. Every error the plugin raises is one of these.

    AdaptiveError
    ├── ConfigError                  bad or missing setting (start-up)
    ├── StorageError
    │   ├── DatabaseUnavailableError database cannot be reached
    │   └── SchemaError              schema newer than this code, or migration failed
    ├── EmbeddingModelError          embedding model missing, altered or unloadable
    ├── KeysError
    │   ├── AuthenticationError      unknown, revoked or malformed project API key (401)
    │   ├── PlanError                plan does not allow the operation (403)
    │   ├── ForbiddenError           credential may not manage this project or route (403)
    │   ├── ModelNotAllowedError     model outside the project's allow-list (403)
    │   ├── NotFoundError            project, API key or provider key not found (404)
    │   ├── VaultError               master key wrong or missing, ciphertext rejected
    │   └── NoKeyAvailableError      no usable key for the provider under the project's policy
    ├── RoutingError
    │   └── NoCandidateError         no routable model can serve the request
    ├── CacheError
    │   └── CacheIndexError          index file corrupt or inconsistent with the store
    ├── BillingError                 ledger cannot be written or read
    └── BoundaryError                a request outside what a project key may do
        ├── RouteNotAllowedError     route closed to project keys (operator only) (403)
        ├── ForbiddenParameterError  body field that changes where or as whom a call goes (400)
        └── InvalidRequestError      malformed body or a parameter of the wrong type or range (400)

Leaf errors carry an HTTP `status_code` and a stable machine-readable `code`. Only
`adaptive_plugin.adapters` turns them into LiteLLM or HTTP responses.
"""

from __future__ import annotations

__all__ = [
    "AdaptiveError",
    "AuthenticationError",
    "BillingError",
    "BoundaryError",
    "CacheError",
    "CacheIndexError",
    "ConfigError",
    "DatabaseUnavailableError",
    "EmbeddingModelError",
    "ForbiddenError",
    "ForbiddenParameterError",
    "InvalidRequestError",
    "KeysError",
    "ModelNotAllowedError",
    "NoCandidateError",
    "NoKeyAvailableError",
    "NotFoundError",
    "PlanError",
    "RouteNotAllowedError",
    "RoutingError",
    "SchemaError",
    "StorageError",
    "VaultError",
]


class AdaptiveError(Exception):
    """Base of every plugin error."""

    status_code: int = 500
    code: str = "adaptive_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, object]:
        return {"error": {"message": self.message, "type": "adaptive_error", "code": self.code}}


class ConfigError(AdaptiveError):
    status_code = 500
    code = "config_invalid"


class StorageError(AdaptiveError):
    status_code = 503
    code = "storage_error"


class DatabaseUnavailableError(StorageError):
    status_code = 503
    code = "database_unavailable"


class SchemaError(StorageError):
    status_code = 500
    code = "schema_error"


class EmbeddingModelError(AdaptiveError):
    status_code = 500
    code = "embedding_model_error"


class KeysError(AdaptiveError):
    status_code = 400
    code = "keys_error"


class AuthenticationError(KeysError):
    status_code = 401
    code = "invalid_api_key"


class PlanError(KeysError):
    status_code = 403
    code = "plan_not_allowed"


class ForbiddenError(KeysError):
    status_code = 403
    code = "forbidden"


class ModelNotAllowedError(KeysError):
    status_code = 403
    code = "model_not_allowed"


class NotFoundError(KeysError):
    status_code = 404
    code = "not_found"


class VaultError(KeysError):
    status_code = 500
    code = "vault_error"


class NoKeyAvailableError(KeysError):
    status_code = 424
    code = "no_provider_key"


class RoutingError(AdaptiveError):
    status_code = 400
    code = "routing_error"


class NoCandidateError(RoutingError):
    status_code = 400
    code = "no_candidate_model"


class CacheError(AdaptiveError):
    status_code = 500
    code = "cache_error"


class CacheIndexError(CacheError):
    status_code = 500
    code = "cache_index_corrupt"


class BillingError(AdaptiveError):
    status_code = 500
    code = "billing_error"


class BoundaryError(AdaptiveError):
    """A request outside what a project key may do; `param` names the field when there is one."""

    status_code = 400
    code = "boundary_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class RouteNotAllowedError(BoundaryError):
    status_code = 403
    code = "route_not_allowed"


class ForbiddenParameterError(BoundaryError):
    status_code = 400
    code = "forbidden_parameter"


class InvalidRequestError(BoundaryError):
    status_code = 400
    code = "invalid_parameter"
