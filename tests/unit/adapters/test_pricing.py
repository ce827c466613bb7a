"""Honest prices: a pooled deployment LiteLLM cannot price stops start-up, naming it; BYOK-only ones need none."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptive_plugin.adapters import pricing
from adaptive_plugin.adapters.deployments import describe
from adaptive_plugin.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def deployment(name: str, model: str, *, api_key: str | None = "os.environ/POOL_KEY", **info: Any) -> dict[str, Any]:
    params = {"model": model, **({"api_key": api_key} if api_key else {})}
    return {"model_name": name, "litellm_params": params, "model_info": info}


def test_unpriced_pooled_deployment_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_KEY", "sk-pool-1234567890")
    models = [deployment("mini", "openai/gpt-4o-mini"), deployment("llama-3.1-8b", "groq/llama-3.1-8b-instant"),
              deployment("flash", "gemini/gemini-1.5-flash")]
    with pytest.raises(ConfigError) as err:
        pricing.check_prices(models)
    assert "'llama-3.1-8b' (groq/llama-3.1-8b-instant)" in err.value.message
    assert "'flash' (gemini/gemini-1.5-flash)" in err.value.message
    assert "'mini'" not in err.value.message
    assert "input_cost_per_token" in err.value.message


def test_model_info_prices_make_it_priced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_KEY", "sk-pool-1234567890")
    priced = deployment("llama-3.1-8b", "groq/llama-3.1-8b-instant", input_cost_per_token=5e-8,
                        output_cost_per_token=8e-8)
    pricing.check_prices([priced])
    info = describe(priced)
    assert (info.priced, info.input_cost_per_token, info.output_cost_per_token) == (True, 5e-8, 8e-8)
    half = deployment("half", "groq/llama-3.1-8b-instant", input_cost_per_token=5e-8)
    with pytest.raises(ConfigError, match="'half'"):
        pricing.check_prices([half])


def test_free_is_a_price_but_missing_is_not(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_KEY", "sk-pool-1234567890")
    pricing.check_prices([deployment("house", "openai/house-llm", input_cost_per_token=0, output_cost_per_token=0)])


def test_byok_only_deployments_need_no_price(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.delenv("POOL_KEY", raising=False)
    models = [deployment("llama", "groq/llama-3.1-8b-instant"),  # its key variable is unset: no pooled key
              deployment("byok", "groq/llama-3.1-8b-instant", api_key=None)]
    with caplog.at_level(logging.WARNING, logger="adaptive_plugin"):
        pricing.check_prices(models)
    assert "spend caps on project keys cannot count its cost" in caplog.text


def test_model_info_overrides_the_cost_map_field_by_field() -> None:
    info = describe(deployment("mini", "openai/gpt-4o-mini", input_cost_per_token=1e-6))
    assert info.input_cost_per_token == 1e-6  # the override
    assert info.output_cost_per_token == 6e-7 and info.cache_read_input_token_cost == 7.5e-8  # the cost map's


@pytest.mark.parametrize("config", ["proxy.yaml", "demo.yaml"])
def test_shipped_configs_price_every_deployment(config: str) -> None:
    models = pricing.config_model_list(REPO / "config" / config)
    pooled, byok_only = pricing.unpriced(models)
    assert pooled == [] and byok_only == []
    providers = {describe(d).provider for d in models}
    assert providers == {"openai", "anthropic", "gemini", "groq", "deepseek"}


def test_shipped_configs_list_routable_models_of_every_provider() -> None:
    for config in ("proxy.yaml", "demo.yaml"):
        models = pricing.config_model_list(REPO / "config" / config)
        routable = [describe(d) for d in models if describe(d).routable]
        assert {info.provider for info in routable} == {"openai", "anthropic", "gemini", "groq", "deepseek"}, config
        assert all(info.strengths and info.tier in (1, 2, 3) for info in routable), config


def test_included_files_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POOL_KEY", "sk-pool-1234567890")
    (tmp_path / "more.yaml").write_text(yaml.safe_dump({"model_list": [deployment("x", "groq/llama-3.1-8b-instant")]}))
    (tmp_path / "main.yaml").write_text(yaml.safe_dump({"include": ["more.yaml"], "model_list": []}))
    with pytest.raises(ConfigError, match="'x'"):
        pricing.check_prices(pricing.config_model_list(tmp_path / "main.yaml"))
