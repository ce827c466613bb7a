"""Honest prices: every pooled deployment must have a model price, or the proxy does not start.

A request served by a pooled key is billed the model cost LiteLLM computes (`response_cost`),
from its cost map or from the deployment's `model_info` prices, which LiteLLM's router
registers for the deployment. A pooled deployment LiteLLM cannot price would bill $0 model cost,
never reach a spending cap and be chosen by `auto` as if free, so start-up refuses it, naming
the deployment. BYOK-only deployments (no pooled key) need no price: the project pays its
provider itself; without one, spend caps on its keys cannot count it, which is logged.

The check reads the proxy's YAML model list when the plugin is built (the router does not exist
yet), resolving `os.environ/NAME` references as LiteLLM does: a deployment whose key variable
is unset has no pooled key. Deployments added later (the proxy's database) are checked when the
router's model list is read, and logged as errors: the proxy is already serving.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from adaptive_plugin.adapters.deployments import DeploymentInfo, describe
from adaptive_plugin.errors import ConfigError

log = logging.getLogger("adaptive_plugin")
_ENV_REF = "os.environ/"


def _resolved(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_ENV_REF):
        return os.environ.get(value[len(_ENV_REF):]) or None
    return value


def _with_resolved_key(deployment: dict[str, Any]) -> dict[str, Any]:
    params = dict(deployment.get("litellm_params") or {})
    params["api_key"] = _resolved(params.get("api_key"))
    return {**deployment, "litellm_params": params}


def _label(info: DeploymentInfo) -> str:
    return f"{info.model_group!r} ({info.model})"


def unpriced(model_list: Iterable[dict[str, Any]]) -> tuple[list[DeploymentInfo], list[DeploymentInfo]]:
    """(pooled deployments without a price, BYOK-only deployments without a price)."""
    pooled, byok_only = [], []
    for deployment in model_list:
        info = describe(_with_resolved_key(deployment))
        if not info.priced:
            (pooled if info.pooled else byok_only).append(info)
    return pooled, byok_only


def check_prices(model_list: Iterable[dict[str, Any]]) -> None:
    """`ConfigError` naming every pooled deployment without a price; BYOK-only ones are logged."""
    pooled, byok_only = unpriced(list(model_list))
    for info in byok_only:
        log.warning("adaptive: deployment %s has no price in LiteLLM's cost map or its model_info: spend caps on "
                    "project keys cannot count its cost", _label(info))
    if pooled:
        names = ", ".join(_label(info) for info in pooled)
        raise ConfigError(
            f"pooled deployment(s) without a model price: {names}. LiteLLM's cost map does not price them, so "
            "pooled requests would bill $0 model cost and never reach a spending cap. Set model_info "
            "input_cost_per_token and output_cost_per_token (USD per token; cache_read_input_token_cost for "
            "prompt-cache hits) on each, or remove its pooled api_key to make it BYOK-only"
        )


def log_unpriced(model_list: Iterable[dict[str, Any]]) -> None:
    """For deployments the router holds (some may come from the proxy's database): log, never raise."""
    pooled, _ = unpriced(model_list)
    for info in pooled:
        log.error("adaptive: pooled deployment %s has no model price: its pooled requests bill $0 model cost",
                  _label(info))


def _read_config(config_path: Path, purpose: str) -> dict[str, Any]:
    try:
        return yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read the proxy config {config_path} to {purpose}: {exc}") from exc


def config_model_list(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The `model_list` of a proxy config file and of the files it `include`s."""
    config_path = Path(path)
    config = _read_config(config_path, "check deployment prices")
    models = list(config.get("model_list") or [])
    for include in config.get("include") or []:
        models.extend(config_model_list(config_path.parent / str(include)))
    return models


def config_litellm_settings(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The `litellm_settings` of a proxy config file."""
    return dict(_read_config(Path(path), "check its litellm_settings").get("litellm_settings") or {})


def check_startup_prices() -> None:
    """Check the proxy's config file, if the plugin runs inside a proxy that loaded one."""
    path = proxy_config_path()
    if path is None:
        log.info("adaptive: no proxy config file known; deployment prices are checked when the router starts")
        return
    check_prices(config_model_list(path))


def proxy_config_path() -> str | None:
    try:
        from litellm.proxy import proxy_server
    except ImportError:  # pragma: no cover - the proxy extra is a dependency
        return None
    path = getattr(proxy_server, "user_config_file_path", None) or os.environ.get("CONFIG_FILE_PATH")
    return str(path) if path and os.path.isfile(str(path)) else None
