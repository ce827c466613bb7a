"""The plugin's one typed settings model, read from `ADAPTIVE_*` environment variables.

Every field is typed, defaulted and described; an unknown `ADAPTIVE_*` variable or a bad
value fails start-up with a `ConfigError` that names the variable. Secrets (the vault's
master keys, a database password) are never logged: `Settings.redacted()` is the view
that may be shown.

    >>> s = Settings.from_env({"ADAPTIVE_MASTER_KEYS": Settings.generate_master_key()})
    >>> s.overhead_input_usd_per_mtok
    Decimal('0.10')
"""

from __future__ import annotations

import base64
import difflib
import os
import secrets
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from adaptive_plugin.errors import ConfigError

ENV_PREFIX = "ADAPTIVE_"
_SECRET_FIELDS = frozenset({"database_url", "master_keys", "metrics_token", "redis_url", "redis_password"})


class Settings(BaseSettings):
    """Settings of the plugin. Each field is set by the environment variable ADAPTIVE_<FIELD>."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid", frozen=True, case_sensitive=False)

    state_dir: Path = Field(
        None,  # type: ignore[assignment]  # filled in by _default_state_dir: never None once built
        description="Writable directory for the SQLite file and FAISS index files (default: $XDG_STATE_HOME/adaptive-plugin).",
    )
    database_url: SecretStr | None = Field(
        None, description="SQLAlchemy URL of the database; default: SQLite file adaptive.db in state_dir."
    )
    master_keys: SecretStr | None = Field(
        None,
        description="Comma-separated base64 AES-256 keys for the key vault; the first encrypts, all decrypt. Required.",
    )
    embedding_model_dir: Path | None = Field(
        None, description="Directory of the offline embedding model (default: where `adaptive-plugin fetch-model` puts it)."
    )
    embedding_model_name: str | None = Field(
        None, description="A fastembed model name to download instead of the offline model (needs internet)."
    )
    embedding_threads: int = Field(
        2, ge=1, le=64,
        description="onnxruntime pool size: request embeddings run on threads - 1 pool threads (1: in a Python thread).",
    )
    embedding_process: bool = Field(
        True,
        description="Embed requests in a worker process beside the event loop (in-process, an embedding stalls the loop).",
    )
    embedding_batch_texts: int = Field(
        8, ge=1, le=64,
        description="The embedding worker embeds up to this many waiting texts in one run (1: one at a time).",
    )
    gc_freeze: bool = Field(
        True, description="Freeze the proxy's start-up heap out of the garbage collector (no full-collection pauses)."
    )
    overhead_input_usd_per_mtok: Decimal = Field(Decimal("0.10"), ge=0, description="Gateway fee per 1M input tokens, USD.")
    overhead_output_usd_per_mtok: Decimal = Field(Decimal("0.20"), ge=0, description="Gateway fee per 1M output tokens, USD.")
    cache_hit_fee_discount: Decimal = Field(
        Decimal("0.5"), ge=0, le=1, description="Share of the overhead fee waived on a cache hit (0.5 = 50% off)."
    )
    cache_enabled: bool = Field(True, description="Semantic cache on for chat completions (projects may turn it off).")
    cache_ttl_seconds: int = Field(86400, gt=0, description="Lifetime of a cache entry in seconds.")
    cache_max_entries: int = Field(100_000, gt=0, description="Maximum cache entries per process index before LRU eviction.")
    cache_max_temperature: float = Field(
        0.7, ge=0, le=2, description="Requests with a higher temperature are neither served from nor stored in the cache."
    )
    cache_similarity_threshold: float | None = Field(
        None, ge=0, le=1, description="Override of the cache's cosine threshold (default: the tuned value)."
    )
    cache_first_look: bool = Field(
        True, description="Search the static token table first; embed with the full model only when an entry is near."
    )
    cache_first_look_threshold: float | None = Field(
        None, ge=0, le=1, description="Override of the first look's similarity below which a lookup is a miss at once."
    )
    cache_write_seconds: float = Field(
        0.25, gt=0, le=10,
        description="Under load, answers are gathered this long and written to the cache in one batch (quiet: at once).",
    )
    auto_model_name: str = Field("auto", min_length=1, description="Model name that asks the router to choose.")
    default_cost_bias: float = Field(0.5, ge=0, le=1, description="Default trade-off: 0 = cheapest model, 1 = best model.")
    routing_use_embedding: bool = Field(True, description="Use the prompt embedding in the complexity score.")
    key_cooldown_seconds: float = Field(30.0, gt=0, description="Cooldown of a failing key when the provider gives no retry-after.")
    ledger_flush_seconds: float = Field(0.5, gt=0, description="Usage rows are committed (in batches) within this many seconds.")
    ledger_batch_size: int = Field(500, gt=0, description="Largest batch of usage rows written at once.")
    metrics_project_labels: bool = Field(
        False, description="Add a project label (the project id) to request and fee metrics; needs an authenticated /metrics."
    )
    metrics_token: SecretStr | None = Field(
        None, description="Bearer token that may read /metrics and nothing else (when /metrics requires authentication)."
    )
    open_routes: str = Field(
        "",
        description="Comma-separated templates of LiteLLM routes that authenticate nobody to leave open to anyone "
        "(default: only the health probes, /metrics and the API docs).",
    )
    sync_interval_seconds: float = Field(
        1.0, gt=0, description="How often shared state (cache entries; key changes, as a safety net) is re-read from the database."
    )
    redis_url: SecretStr | None = Field(
        None, description="Redis URL (redis://[:password@]host:port/db) for state shared by every worker and replica."
    )
    redis_password: SecretStr | None = Field(
        None, description="Password for redis_url, kept out of the URL (e.g. from a Kubernetes Secret); wins over one in it."
    )
    limits_enabled: bool = Field(
        True, description="Enforce spending caps and rate limits (provider keys, projects, environments)."
    )
    limits_redis_fallback: Literal["database", "refuse"] = Field(
        "database", description="When Redis cannot be reached: count limits in the database, or refuse limited requests (503)."
    )
    limits_redis_prefix: str = Field(
        "adaptive:limits:", min_length=1, max_length=100, description="Prefix of the limit counters' Redis keys."
    )
    limits_default_max_output_tokens: int = Field(
        4096, gt=0, description="Output tokens reserved when a request sets no max_tokens and the model's limit is unknown."
    )
    limits_hold_seconds: float = Field(
        900.0, gt=0, description="A reservation not settled within this time (its worker died) stops counting."
    )
    ui_enabled: bool = Field(True, description="Serve the project dashboard under /adaptive/ui.")
    ui_idle_timeout_seconds: int = Field(1800, gt=0, description="A dashboard session ends after this many seconds without a request.")
    ui_session_max_seconds: int = Field(43200, gt=0, description="A dashboard session ends this many seconds after sign-in, however active.")

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings, file_secret_settings):  # type: ignore[no-untyped-def,override]
        # from_env() is the one reader of the environment (it checks names and maps errors);
        # without this, pydantic-settings would also read os.environ behind an explicit mapping.
        return (init_settings,)

    @model_validator(mode="before")
    @classmethod
    def _default_state_dir(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("state_dir") in (None, ""):
            data = {**data, "state_dir": default_state_dir()}
        return data

    @field_validator("master_keys")
    @classmethod
    def _check_master_keys(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        for i, raw in enumerate(value.get_secret_value().split(",")):
            try:
                key = base64.b64decode(raw.strip(), validate=True)
            except (ValueError, TypeError):
                raise ValueError(f"key #{i + 1} is not valid base64") from None
            if len(key) != 32:
                raise ValueError(f"key #{i + 1} decodes to {len(key)} bytes; AES-256 needs 32")
        return value

    @model_validator(mode="after")
    def _check_model_source(self) -> Settings:
        if self.embedding_model_dir is not None and self.embedding_model_name is not None:
            raise ValueError("set only one of embedding_model_dir and embedding_model_name")
        if self.redis_password is not None and self.redis_url is None:
            raise ValueError("redis_password is set but redis_url is not: name the Redis server with ADAPTIVE_REDIS_URL")
        return self

    def resolved_redis_url(self) -> str | None:
        """`redis_url` with `redis_password` (URL-encoded) in it, or None without Redis."""
        if self.redis_url is None:
            return None
        url = self.redis_url.get_secret_value()
        if self.redis_password is None:
            return url
        parts = urlsplit(url)
        host = parts.netloc.rsplit("@", 1)[-1]
        user = parts.username or ""
        netloc = f"{quote(user, safe='')}:{quote(self.redis_password.get_secret_value(), safe='')}@{host}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))

    # -- construction --------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Build from an environment mapping, raising ConfigError that names the bad variable."""
        env = dict(os.environ if environ is None else environ)
        known = {name.upper() for name in cls.model_fields}
        unknown = [k for k in env if k.upper().startswith(ENV_PREFIX) and k.upper()[len(ENV_PREFIX):] not in known]
        unknown = [k for k in unknown if k.upper() not in _NOT_SETTINGS]
        if unknown:
            name = unknown[0]
            guess = difflib.get_close_matches(name.upper()[len(ENV_PREFIX):], known, n=1)
            hint = f" (did you mean {ENV_PREFIX}{guess[0]}?)" if guess else ""
            raise ConfigError(f"unknown setting {name}{hint}")
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is None:
                raw = next((v for k, v in env.items() if k.upper() == ENV_PREFIX + name.upper()), None)
            if raw is not None:
                values[name] = raw
        values.setdefault("state_dir", default_state_dir(env))
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = str(err["loc"][0]) if err["loc"] else ""
            where = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
            raise ConfigError(f"invalid setting {where}: {err['msg']}") from None

    @staticmethod
    def generate_master_key() -> str:
        """A new random base64 AES-256 key, for ADAPTIVE_MASTER_KEYS."""
        return base64.b64encode(secrets.token_bytes(32)).decode()

    # -- derived values ------------------------------------------------------------------

    def resolved_database_url(self) -> str:
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{(self.state_dir / 'adaptive.db').resolve()}"

    def opened_routes(self) -> frozenset[str]:
        """The route templates of `open_routes`."""
        return frozenset(r.strip() for r in self.open_routes.split(",") if r.strip())

    def master_key_bytes(self) -> list[bytes]:
        """The vault keys, newest (encrypting) first. ConfigError if none are configured."""
        if self.master_keys is None or not self.master_keys.get_secret_value().strip():
            raise ConfigError(
                "missing setting ADAPTIVE_MASTER_KEYS: the key vault needs at least one base64 AES-256 key "
                "(create one with `adaptive-plugin keys generate-master-key`)"
            )
        return [base64.b64decode(k.strip()) for k in self.master_keys.get_secret_value().split(",")]

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict with secrets (and anything named like one) replaced."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) or name in _SECRET_FIELDS:
                out[name] = None if value is None else "***"
            else:
                out[name] = str(value) if isinstance(value, (Path, Decimal)) else value
        return out


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """$XDG_STATE_HOME/adaptive-plugin, else ~/.local/state/adaptive-plugin: the same directory
    for the proxy and the CLI wherever they are started (not the working directory)."""
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".local" / "state")
    return Path(base) / "adaptive-plugin"


# ADAPTIVE_* variables that are read elsewhere, not settings of this model.
# ADAPTIVE_GATEWAY_URL and ADAPTIVE_ADMIN_KEY: the `adaptive-plugin self` commands (an HTTP client).
_NOT_SETTINGS = frozenset({"ADAPTIVE_CONFIG_CHECKSUM", "ADAPTIVE_GATEWAY_URL", "ADAPTIVE_ADMIN_KEY"})
