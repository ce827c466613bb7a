"""What the plugin needs to know about the router's deployments, read once per model list.

Prices are LiteLLM's own (`model_prices`): routing, pooled billing (LiteLLM's `response_cost`)
and BYOK spend caps therefore all use one price per deployment.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import litellm

from adaptive_plugin import providers

log = logging.getLogger("adaptive_plugin")
PRICE_FIELDS = ("input_cost_per_token", "output_cost_per_token")


@dataclass(frozen=True, slots=True)
class DeploymentInfo:
    id: str
    model_group: str
    model: str  # litellm model string, e.g. openai/gpt-4o-mini
    provider: str
    pooled: bool  # the deployment carries the operator's own key
    weight: float
    routable: bool
    tier: int
    strengths: frozenset[str]
    input_cost_per_token: float
    output_cost_per_token: float
    cache_read_input_token_cost: float | None  # None: LiteLLM prices cached input as it decides
    priced: bool  # both token prices known (cost map or model_info): LiteLLM can bill it
    max_input_tokens: int | None
    supports_tools: bool
    supports_vision: bool
    supports_json: bool


def provider_of(litellm_params: dict[str, Any]) -> str:
    """The provider whose keys the deployment takes: the registry's canonical name for the
    LiteLLM providers it covers (`adaptive_plugin.providers`), else LiteLLM's own name."""
    model = str(litellm_params.get("model", ""))
    try:
        _, provider, _, _ = litellm.get_llm_provider(model=model, custom_llm_provider=litellm_params.get("custom_llm_provider"))
    except Exception:  # noqa: BLE001 - unknown providers keep their prefix
        provider = model.split("/", 1)[0] if "/" in model else "openai"
    return providers.for_litellm(str(provider))


def model_prices(model: str, params: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    """The deployment's prices as LiteLLM bills them: its cost map entry, overridden field by field
    by `model_info` (which the router registers for the deployment) and `litellm_params`."""
    try:
        known = dict(litellm.get_model_info(model))
    except Exception:  # noqa: BLE001 - models missing from the price map use config prices only
        known = {}
    for source in (info, params):
        for name in (*PRICE_FIELDS, "cache_read_input_token_cost", "max_input_tokens"):
            if source.get(name) is not None:
                known[name] = source[name]
    return known


def _is_price(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def describe(deployment: dict[str, Any]) -> DeploymentInfo:
    params = dict(deployment.get("litellm_params") or {})
    info = dict(deployment.get("model_info") or {})
    adaptive = dict(info.get("adaptive") or {})
    model = str(params.get("model", ""))
    prices = model_prices(model, params, info)
    return DeploymentInfo(
        id=str(info.get("id", "")),
        model_group=str(deployment.get("model_name", "")),
        model=model,
        provider=provider_of(params),
        pooled=bool(adaptive.get("pooled", bool(params.get("api_key")))),
        weight=float(params.get("weight", 1) or 1),
        routable=bool(adaptive.get("routable", False)),
        tier=int(adaptive.get("tier", 1)),
        strengths=frozenset(str(s) for s in adaptive.get("strengths", ())),
        input_cost_per_token=float(prices.get("input_cost_per_token") or 0.0),
        output_cost_per_token=float(prices.get("output_cost_per_token") or 0.0),
        cache_read_input_token_cost=(float(prices["cache_read_input_token_cost"])
                                     if _is_price(prices.get("cache_read_input_token_cost")) else None),
        priced=all(_is_price(prices.get(name)) for name in PRICE_FIELDS),
        max_input_tokens=int(prices["max_input_tokens"]) if prices.get("max_input_tokens") else None,
        supports_tools=bool(adaptive.get("supports_tools", prices.get("supports_function_calling", True))),
        supports_vision=bool(adaptive.get("supports_vision", prices.get("supports_vision", False))),
        supports_json=bool(adaptive.get("supports_json", prices.get("supports_response_schema", True))),
    )


class DeploymentIndex:
    """DeploymentInfo by deployment id, rebuilt when the router's model list changes."""

    def __init__(self) -> None:
        self._by_id: dict[str, DeploymentInfo] = {}
        self._signature: tuple[str, ...] = ()

    def refresh(self, model_list: list[dict[str, Any]]) -> None:
        signature = tuple(str((d.get("model_info") or {}).get("id", "")) for d in model_list)
        if signature == self._signature:
            return
        self._by_id = {}
        for deployment in model_list:
            info = describe(deployment)
            self._by_id[info.id] = info
            if info.pooled and not info.priced:  # start-up refuses these from the config file (pricing.py)
                log.error("adaptive: pooled deployment %r (%s) has no model price: its pooled requests bill $0 "
                          "model cost", info.model_group, info.model)
        self._signature = signature

    def get(self, deployment: dict[str, Any]) -> DeploymentInfo:
        dep_id = str((deployment.get("model_info") or {}).get("id", ""))
        info = self._by_id.get(dep_id)
        if info is None:
            info = describe(deployment)
            self._by_id[dep_id] = info
        return info

    def groups(self) -> dict[str, list[DeploymentInfo]]:
        out: dict[str, list[DeploymentInfo]] = {}
        for info in self._by_id.values():
            out.setdefault(info.model_group, []).append(info)
        return out
