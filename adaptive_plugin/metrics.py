"""Every Prometheus metric of the plugin, defined once.

Names follow `adaptive_<capability>_<what>_<unit>`. Labels take small fixed value sets only
(model group, provider, outcome, reason); never key strings, user or request ids. Project
labels are off unless the operator sets `ADAPTIVE_METRICS_PROJECT_LABELS=true`, which adds a
`project` label to the request and fee counters (refused at start-up while /metrics is open).
LiteLLM's own `litellm_*` series lose their tenant labels in adapters/metrics_guard.py.

The proxy may run several workers: set PROMETHEUS_MULTIPROC_DIR in the launch environment
(wiped on start). LiteLLM's own `/metrics` (the `prometheus` callback) serves these series,
aggregating the workers' files with a MultiProcessCollector; the plugin mounts no second endpoint.
"""

from __future__ import annotations

import os

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.5)

_PROJECT = ("project",) if os.environ.get("ADAPTIVE_METRICS_PROJECT_LABELS", "").lower() in ("1", "true", "yes") else ()

REQUESTS = Counter(
    "adaptive_requests_total",
    "Requests finished by the plugin, by outcome (success, error).",
    ("model_group", "provider", "key_source", "cache", "outcome", *_PROJECT),
)
TOKENS = Counter(
    "adaptive_tokens_total",
    "Tokens of successful requests, by kind (input, cached_input, output).",
    ("provider", "key_source", "kind", *_PROJECT),
)
OVERHEAD_FEE = Counter(
    "adaptive_billing_overhead_fee_usd_total",
    "Gateway overhead fee billed, in USD.",
    ("key_source", "cache", *_PROJECT),
)
MODEL_COST = Counter(
    "adaptive_billing_model_cost_usd_total",
    "Model cost billed on pooled keys, in USD.",
    ("provider", *_PROJECT),
)
CACHE_LOOKUPS = Counter(
    "adaptive_cache_lookups_total",
    "Semantic cache lookups by outcome (hit_exact, hit_semantic, miss, bypass, error).",
    ("outcome",),
)
CACHE_LOOKUP_SECONDS = Histogram(
    "adaptive_cache_lookup_seconds",
    "Semantic cache lookup latency, embedding included.",
    buckets=LATENCY_BUCKETS,
)
CACHE_ENTRIES = Gauge(
    "adaptive_cache_entries",
    "Entries in this process's semantic cache index.",
    multiprocess_mode="max",
)
CACHE_EVICTIONS = Counter(
    "adaptive_cache_evictions_total",
    "Semantic cache entries evicted, by reason (ttl, capacity).",
    ("reason",),
)
CACHE_STORES = Counter(
    "adaptive_cache_stores_total",
    "Responses stored in the semantic cache, by result (stored, skipped, failed).",
    ("result",),
)
CACHE_FIRST_LOOK = Counter(
    "adaptive_cache_first_look_total",
    "Semantic lookups by what the first look (the static token table) decided: miss (no entry near "
    "enough, or every near one fails a guard: no full embedding) or embedded (the full model decides).",
    ("result",),
)
CACHE_ENTRY_EMBEDDINGS = Counter(
    "adaptive_cache_entry_embeddings_total",
    "Cached entries embedded with the full model after they were stored: when a lookup first came near "
    "them, or when their stored vector came from another model or kernel.",
)
ROUTING_DECISIONS = Counter(
    "adaptive_routing_decisions_total",
    "Model selections for auto requests, by chosen model group and task type.",
    ("model_group", "task_type"),
)
VAULT_FAILURES = Counter(
    "adaptive_keys_vault_failures_total",
    "Provider key rows that did not decrypt, by reason (authentication: altered row, marked broken; "
    "unknown_master_key).",
    ("reason",),
)
CHANGE_CATCH_UPS = Counter(
    "adaptive_changes_catch_ups_total",
    "Times this process applied newer shared changes (revocations, plan changes), by where: "
    "request (found by a request's check) or background (pushed or polled first).",
    ("where",),
)
KEY_FALLBACKS = Counter(
    "adaptive_key_fallbacks_total",
    "Attempts that failed on a key and moved to the next one, by reason.",
    ("provider", "key_source", "reason"),
)
PLUGIN_LATENCY_SECONDS = Histogram(
    "adaptive_plugin_latency_seconds",
    "Time spent inside plugin hooks per request, by stage.",
    ("stage",),
    buckets=LATENCY_BUCKETS,
)
EMBEDDING_SECONDS = Histogram(
    "adaptive_embedding_seconds",
    "Compute time of one request embedding (in the worker: its share of its batch's run), where it ran "
    "(process, in_process); no waiting included.",
    ("where",),
    buckets=(0.0005, 0.001, 0.0015, 0.002, 0.003, 0.004, 0.005, 0.006, 0.008, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25),
)
EMBEDDING_BATCHES = Counter(
    "adaptive_embedding_batches_total",
    "Runs of the embedding worker process; each embeds the texts that were waiting (texts per run: "
    "adaptive_embedding_seconds_count{where=\"process\"} / this).",
)
LEDGER_ROWS = Counter(
    "adaptive_billing_ledger_rows_total",
    "Usage rows written to the ledger.",
)
LEDGER_COMMIT_LAG_SECONDS = Histogram(
    "adaptive_billing_ledger_commit_lag_seconds",
    "Per ledger batch, from its first row being queued to its commit (what a crash could lose).",
    buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0),
)

LIMITS_REFUSALS = Counter(
    "adaptive_limits_refusals_total",
    "Attempts a spending cap or rate limit refused, by scope (key, project, environment) and limit (spend, rpm, tpm).",
    ("scope", "limit"),
)
LIMITS_STORE_FALLBACKS = Counter(
    "adaptive_limits_store_fallbacks_total",
    "Limit operations Redis did not answer, by what happened instead (database, refuse).",
    ("outcome",),
)
# Counters whose label values are few and known: every series exists from the start (at 0), so
# rate() sees the first event and the scrape has the same series before and after one
for _reason in ("authentication", "unknown_master_key"):
    VAULT_FAILURES.labels(reason=_reason)
for _where in ("request", "background"):
    CHANGE_CATCH_UPS.labels(where=_where)
