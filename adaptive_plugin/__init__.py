"""The Adaptive plugin for the LiteLLM proxy: complexity routing, a local semantic cache,
Bring Your Own Keys with pooled fallback, and overhead-only billing.

The proxy loads it from its config (`litellm_settings.callbacks:
[adaptive_plugin.adapters.hooks.hooks]`); the names below are the library surface other
tools may call without a proxy. Heavy modules load on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["AdaptiveError", "SemanticCache", "Settings", "__version__", "complexity_score"]

_LAZY = {
    "AdaptiveError": ("adaptive_plugin.errors", "AdaptiveError"),
    "SemanticCache": ("adaptive_plugin.cache", "SemanticCache"),
    "Settings": ("adaptive_plugin.config", "Settings"),
    "complexity_score": ("adaptive_plugin.routing", "complexity_score"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        if name == "complexity_score":
            _install_keyword_tier()
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'adaptive_plugin' has no attribute {name!r}")


def _install_keyword_tier() -> None:
    """`complexity_score` combines our model with LiteLLM's keyword tier, as the proxy does;
    without litellm installed it scores with our model alone."""
    from adaptive_plugin.adapters.keyword_tier import install

    install()
