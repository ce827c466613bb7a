"""PluginContext: everything the plugin holds, built once at start-up and passed down.

    >>> ctx = PluginContext.build(Settings.from_env())     # doctest: +SKIP
    >>> ctx.close()                                          # doctest: +SKIP

Building fails fast with a `ConfigError`, `StorageError`, `VaultError` or
`EmbeddingModelError` that names the problem; nothing is half-started.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from adaptive_plugin._files import make_dirs, private_dir
from adaptive_plugin._synced import SyncedCache
from adaptive_plugin.billing import FeeRates, Ledger
from adaptive_plugin.changes import ChangeFeed
from adaptive_plugin.config import Settings
from adaptive_plugin.db import make_engine, migrate
from adaptive_plugin.db._changes import ChangeRecord
from adaptive_plugin.embedding import Embedder, default_model_dir
from adaptive_plugin.keys import KeyResolver, KeyService, Principal, ResolvedKey, Vault
from adaptive_plugin.limits import KeyLimits, Limits, open_limits

log = logging.getLogger("adaptive_plugin")

SAFETY_MAX_AGE_SECONDS = 60.0


@dataclass
class PluginContext:
    settings: Settings
    engine: Engine
    keys: KeyService
    resolver: KeyResolver
    ledger: Ledger
    fee_rates: FeeRates
    embedder: Embedder | None
    cache: Any | None  # adaptive_plugin.cache.SemanticCache
    principals: SyncedCache[str, Principal]
    changes: ChangeFeed
    limits: Limits | None = None  # None: ADAPTIVE_LIMITS_ENABLED=false
    closed: bool = False

    @classmethod
    def build(cls, settings: Settings, *, with_embedder: bool = True) -> PluginContext:
        private_dir(settings.state_dir)
        engine = make_engine(settings.resolved_database_url())
        migrate(engine)
        vault = Vault(settings.master_key_bytes())
        keys = KeyService(engine, vault)
        keys.check_vault()
        ledger = Ledger(engine, flush_seconds=settings.ledger_flush_seconds, batch_size=settings.ledger_batch_size)

        # key chains and principals change only with the shared revision (see `changes`); the
        # max age is a safety net for changes made to the database outside the plugin
        chains: SyncedCache[tuple[str, str], list[ResolvedKey]] = SyncedCache(
            lambda scope: keys.active_keys(*scope), max_age=SAFETY_MAX_AGE_SECONDS, scope_of=lambda k, _v: k[0]
        )
        limits = open_limits_for(settings, engine)
        resolver = KeyResolver(
            load_keys=lambda project_id, env: chains.get((project_id, env)),
            limit_hint=(lambda project_id, key: limits.key_hint(project_id, key_limits(key))) if limits else None,
            default_cooldown=settings.key_cooldown_seconds,
        )
        principals: SyncedCache[str, Principal] = SyncedCache(
            keys.authenticate, max_age=SAFETY_MAX_AGE_SECONDS, scope_of=lambda _k, p: p.project_id
        )

        def apply(changes: list[ChangeRecord] | None) -> list[Callable[[], object]]:
            """Drop what the changes touched; returns its loads, for the feed to run ahead of need."""
            if changes is None:  # too far behind for the change log: everything
                chains.invalidate()
                principals.invalidate()
                return []
            loads: list[Callable[[], object]] = []
            for project_id in dict.fromkeys(c.project_id for c in changes):
                loads += [functools.partial(chains.load, k) for k in chains.invalidate_scope(project_id)]
                loads += [functools.partial(principals.load, k) for k in principals.invalidate_scope(project_id)]
            for change in changes:
                if change.kind == "provider_key" and change.key_id:
                    resolver.forget(change.key_id)  # reactivated or re-added: no stale health
            return loads

        redis_url = settings.resolved_redis_url()
        changes = ChangeFeed(engine, apply, redis_url=redis_url, poll_seconds=settings.sync_interval_seconds,
                             stale_seconds=settings.sync_interval_seconds)
        keys.on_change = changes.announce

        embedder = None
        if with_embedder and (settings.cache_enabled or settings.routing_use_embedding):
            embedder = load_embedder(settings)
        cache = None
        if settings.cache_enabled and embedder is not None:
            cache = _open_cache(settings, engine, embedder)
        ledger.start()
        return cls(
            settings=settings,
            engine=engine,
            keys=keys,
            resolver=resolver,
            ledger=ledger,
            fee_rates=FeeRates(
                input_usd_per_mtok=settings.overhead_input_usd_per_mtok,
                output_usd_per_mtok=settings.overhead_output_usd_per_mtok,
                cache_hit_discount=settings.cache_hit_fee_discount,
            ),
            embedder=embedder,
            cache=cache,
            principals=principals,
            changes=changes,
            limits=limits,
        )

    def close(self) -> None:
        """Write queued ledger rows and persist the cache index (clean shutdown). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self.changes.close()
        self.ledger.close()
        if self.cache is not None and hasattr(self.cache, "close"):
            self.cache.close()
        if self.embedder is not None:
            self.embedder.close_process()
        self.engine.dispose()


def open_limits_for(settings: Settings, engine: Engine) -> Limits | None:
    if not settings.limits_enabled:
        log.warning("adaptive: ADAPTIVE_LIMITS_ENABLED=false: spending caps and rate limits are not enforced")
        return None
    return open_limits(
        engine, redis_url=settings.resolved_redis_url(),
        redis_prefix=settings.limits_redis_prefix, redis_fallback=settings.limits_redis_fallback,
        hold_seconds=settings.limits_hold_seconds, sync_seconds=settings.sync_interval_seconds,
    )


def key_limits(key: ResolvedKey) -> KeyLimits:
    """A provider key's own limits, as the limits capability takes them."""
    return KeyLimits(key_id=key.id, fingerprint=key.fingerprint, spend_cap_micros=key.spend_cap_micros,
                     spend_cap_period=key.spend_cap_period, rpm=key.rpm_limit)


def load_embedder(settings: Settings) -> Embedder:
    if settings.embedding_model_name:
        if settings.embedding_process and "embedding_process" in settings.model_fields_set:
            log.warning("ADAPTIVE_EMBEDDING_PROCESS applies to the offline model directory only; "
                        "%s embeds in the proxy process", settings.embedding_model_name)
        return Embedder.from_name(
            settings.embedding_model_name, cache_dir=str(make_dirs(settings.state_dir / "models")),
            threads=settings.embedding_threads,
        )
    model_dir = settings.embedding_model_dir or default_model_dir()
    embedder = Embedder.from_directory(model_dir, threads=settings.embedding_threads)
    if settings.embedding_process:
        embedder.use_process(model_dir, max_batch=settings.embedding_batch_texts)
        if settings.embedding_batch_texts > 1 and not embedder.batch_exact:
            log.info("embedding: the model in %s scales activations per tensor, so a batch would change its texts' "
                     "vectors; the worker embeds one text per run", model_dir)
    return embedder


def _open_cache(settings: Settings, engine: Engine, embedder: Embedder) -> Any:
    from adaptive_plugin.cache import SemanticCache

    options: dict[str, Any] = {
        "engine": engine,
        "embedder": embedder,
        "ttl_seconds": settings.cache_ttl_seconds,
        "max_entries": settings.cache_max_entries,
        "max_temperature": settings.cache_max_temperature,
        "sync_interval": settings.sync_interval_seconds,
        "busy_write_delay": settings.cache_write_seconds,
    }
    if settings.cache_similarity_threshold is not None:
        options["similarity_threshold"] = settings.cache_similarity_threshold
    options["first_look"] = _first_look(settings)
    if settings.cache_first_look_threshold is not None:
        options["first_look_threshold"] = settings.cache_first_look_threshold
    return SemanticCache(settings.state_dir / "cache", **options)


def _first_look(settings: Settings) -> Any:
    """The cache's first look (the static token table beside the offline model), or None."""
    if not settings.cache_first_look:
        return None
    if settings.embedding_model_name:
        log.info("cache: %s has no first-look table; every lookup embeds fully", settings.embedding_model_name)
        return None
    from adaptive_plugin.embedding import StaticEmbedder
    from adaptive_plugin.errors import EmbeddingModelError

    try:
        return StaticEmbedder.from_directory(settings.embedding_model_dir or default_model_dir())
    except EmbeddingModelError as exc:
        log.warning("cache: no first look, every lookup embeds fully (%s)", exc)
        return None
