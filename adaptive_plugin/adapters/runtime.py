"""What the adapter modules share: one PluginContext and the request-path state built on it.

The facade (`hooks.py`) builds one `Runtime` per process and hands it to each per-concern
module (auth, routing, cache backend, admin API); none of them imports the facade. The
import graph of `adapters/` is layered, and `tests/unit/adapters/test_layers.py` keeps it so:

    state, deployments  ->  strategy  ->  runtime  ->  cache_backend, accounting, guard
        ->  routing  ->  auth  ->  admin_api  ->  hooks (the facade)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from adaptive_plugin.adapters.deployments import DeploymentIndex
from adaptive_plugin.adapters.state import RequestRegistry
from adaptive_plugin.adapters.strategy import AdaptiveRoutingStrategy
from adaptive_plugin.config import Settings
from adaptive_plugin.context import PluginContext
from adaptive_plugin.keys import Principal

log = logging.getLogger("adaptive_plugin")

# The operator's own calls with the LiteLLM master key: pooled keys, every model.
OPERATOR = Principal(
    project_id="operator", project_name="operator", environment="production", plan="enterprise", fallback="pooled",
    allowed_models=None, cache_enabled=True, default_cost_bias=None, api_key_id="master",
)


@dataclass
class Runtime:
    """The plugin's state in one proxy process (a worker)."""

    ctx: PluginContext
    registry: RequestRegistry = field(default_factory=RequestRegistry)
    index: DeploymentIndex = field(default_factory=DeploymentIndex)
    # project principals by API key id, as authenticated by this process (the auth result only
    # carries the id: the pre-call hook finds the principal here)
    principals_by_key_id: dict[str, Principal] = field(default_factory=dict)
    strategy: AdaptiveRoutingStrategy | None = None
    _router: Any = None

    @property
    def settings(self) -> Settings:
        return self.ctx.settings

    def ensure_strategy(self) -> bool:
        """Install the strategy on the proxy's current router (it may be rebuilt); cheap when done."""
        from litellm.proxy import proxy_server

        router = proxy_server.llm_router
        if router is None:
            return False
        if router is not self._router:
            self.index.refresh(router.model_list)
            self.strategy = AdaptiveRoutingStrategy(
                router, registry=self.registry, resolver=self.ctx.resolver, index=self.index,
                pooled_cooldown=self.settings.key_cooldown_seconds,
            )
            router.set_custom_routing_strategy(self.strategy)
            if self.ctx.cache is not None:
                router.cache_responses = True
            self._router = router
        return True

    def pooled_healthy(self, info: Any) -> bool:
        """Whether a deployment's pooled key may be used now (it carries one and is not cooling down)."""
        return bool(info.pooled) and (self.strategy is None or self.strategy.pooled_healthy(info))
