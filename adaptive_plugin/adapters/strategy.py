"""The custom router strategy: picks a deployment that this request's project can pay for.

LiteLLM's own selection cools a deployment down for everyone when one key fails on it. With
BYOK that would let one customer's revoked key take a model away from every project, so for
plugin requests this strategy keeps cooldowns itself: per key (in the resolver) and, for
pooled keys only, per deployment. Requests without plugin state (health checks, the
operator's own calls) get LiteLLM's unmodified selection.

Fails closed: when no deployment of the group can be served under the project's policy it
raises the NoKeyAvailableError that explains why.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from litellm.types.router import CustomRoutingStrategyBase

from adaptive_plugin.adapters.deployments import DeploymentIndex, DeploymentInfo
from adaptive_plugin.adapters.state import RequestRegistry, request_metadata
from adaptive_plugin.errors import NoKeyAvailableError

if TYPE_CHECKING:
    from litellm import Router

    from adaptive_plugin.keys import KeyResolver


class AdaptiveRoutingStrategy(CustomRoutingStrategyBase):
    def __init__(self, router: Router, *, registry: RequestRegistry, resolver: KeyResolver, index: DeploymentIndex,
                 pooled_cooldown: float = 30.0) -> None:
        self.router = router
        self.registry = registry
        self.resolver = resolver
        self.index = index
        self.pooled_cooldown = pooled_cooldown
        self._pooled_down_until: dict[str, float] = {}
        self._default = type(router).async_get_available_deployment
        self._default_sync = type(router).get_available_deployment

    def pooled_failed(self, deployment_id: str, retry_after: float | None) -> None:
        """Cool a deployment's pooled key down (rate limits, quota, invalid key) for every request."""
        wait = retry_after if retry_after and retry_after > 0 else self.pooled_cooldown
        self._pooled_down_until[deployment_id] = time.monotonic() + wait

    def pooled_healthy(self, info: DeploymentInfo) -> bool:
        return info.pooled and self._pooled_down_until.get(info.id, 0.0) <= time.monotonic()

    async def async_get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list | None = None,  # noqa: A002 - LiteLLM's parameter name
        specific_deployment: bool | None = False,
        request_kwargs: dict | None = None,
    ) -> Any:
        state = self.registry.get(request_metadata(request_kwargs or {}))
        if state is None:
            return await self._default(self.router, model=model, messages=messages, input=input,
                                       specific_deployment=specific_deployment, request_kwargs=request_kwargs)
        return self._pick(model, state)

    def get_available_deployment(
        self,
        model: str,
        messages: list[dict[str, str]] | None = None,
        input: str | list | None = None,  # noqa: A002
        specific_deployment: bool | None = False,
        request_kwargs: dict | None = None,
    ) -> Any:
        state = self.registry.get(request_metadata(request_kwargs or {}))
        if state is None:
            return self._default_sync(self.router, model=model, messages=messages, input=input,
                                      specific_deployment=specific_deployment, request_kwargs=request_kwargs)
        return self._pick(model, state)

    def _pick(self, model: str, state: Any) -> dict[str, Any]:
        if state.keys.last_error is not None and not state.keys.last_error_retryable:
            # the previous attempt failed for a reason another key cannot fix: give LiteLLM the
            # same error again instead of another provider call
            raise state.keys.last_error
        deployments = self.router.get_model_list(model_name=model) or []
        if not deployments:
            raise NoKeyAvailableError(f"no deployment is configured for model {model!r}")
        self.index.refresh(self.router.model_list)
        byok: list[tuple[dict[str, Any], DeploymentInfo]] = []
        pooled: list[tuple[dict[str, Any], DeploymentInfo]] = []
        for dep in deployments:
            info = self.index.get(dep)
            if self.resolver.usable_byok(state.principal, info.provider, exclude=state.keys.attempted):
                byok.append((dep, info))
            elif state.principal.fallback == "pooled" and self.pooled_healthy(info):
                pooled.append((dep, info))
        pool = byok or pooled
        if not pool:
            # let the resolver phrase the reason for the first provider of the group
            info = self.index.get(deployments[0])
            raise self.resolver.refusal(state.principal, info.provider, state.keys,
                                        pooled_available=self.pooled_healthy(info))
        weights = [max(info.weight, 0.0) or 1.0 for _, info in pool]
        dep, info = random.choices(pool, weights=weights, k=1)[0]
        state.provider = info.provider
        return dep
