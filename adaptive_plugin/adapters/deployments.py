"""What the plugin needs to know about the router's deployments, read once per model list."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import litellm

log = logging.getLogger("adaptive_plugin")


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
    max_input_tokens: int | None
    supports_tools: bool
    supports_vision: bool
    supports_json: bool


def provider_of(litellm_params: dict[str, Any]) -> str:
    model = str(litellm_params.get("model", ""))
    try:
        _, provider, _, _ = litellm.get_llm_provider(model=model, custom_llm_provider=litellm_params.get("custom_llm_provider"))
    except Exception:  # noqa: BLE001 - unknown providers keep their prefix
        provider = model.split("/", 1)[0] if "/" in model else "openai"
    return str(provider)


def _model_prices(model: str, params: dict[str, Any], info: dict[str, Any]) -> dict[str, Any]:
    try:
        known = dict(litellm.get_model_info(model))
    except Exception:  # noqa: BLE001 - models missing from the price map use config prices only
        known = {}
    for source in (info, params):
        for name in ("input_cost_per_token", "output_cost_per_token", "max_input_tokens"):
            if source.get(name) is not None:
                known[name] = source[name]
    return known


def describe(deployment: dict[str, Any]) -> DeploymentInfo:
    params = dict(deployment.get("litellm_params") or {})
    info = dict(deployment.get("model_info") or {})
    adaptive = dict(info.get("adaptive") or {})
    model = str(params.get("model", ""))
    prices = _model_prices(model, params, info)
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
