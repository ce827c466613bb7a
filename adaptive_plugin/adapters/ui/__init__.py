"""The project dashboard under `/adaptive/ui`: server-rendered Jinja2 pages over the self-service
operations, every asset served from this package (no build step, no CDN)."""

from __future__ import annotations

from adaptive_plugin.adapters.ui._routes import build_router

__all__ = ["build_router"]
