"""Pieces of the dashboard that need no proxy: the usage chart and the routes a setting turns off."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from types import SimpleNamespace

from sqlalchemy.engine import Engine

from adaptive_plugin.adapters.ui._chart import daily_chart, usd
from adaptive_plugin.config import Settings

SVG = "{http://www.w3.org/2000/svg}"


def test_chart_draws_each_days_fee_and_cost_by_group_with_exact_titles() -> None:
    days = ["2026-01-01", "2026-01-02", "2026-01-03"]
    groups = {"byok": ([120, 0, 40], [0, 0, 0]), "pooled": ([30, 0, 10], [900, 0, 250])}
    svg = daily_chart(days, groups, title="Fee <and> cost")
    root = ET.fromstring(svg)  # well-formed, escaped
    assert root.get("role") == "img" and root.find(f"{SVG}title").text == "Fee <and> cost"
    titles = [t.text for t in root.iter(f"{SVG}title")][1:]
    assert "2026-01-01 byok overhead fee: $0.00012" in titles
    assert "2026-01-01 pooled model cost: $0.0009" in titles
    assert not any("2026-01-02" in t for t in titles)  # nothing on an empty day
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 6  # day 1: fee byok, fee pooled, cost pooled; day 3: the same
    assert "overhead fee $0.0002" in root.find(f"{SVG}desc").text and "model cost $0.00115" in root.find(f"{SVG}desc").text
    # taller bars for larger amounts, on one scale
    heights = {t.find(f"{SVG}title").text: float(t.get("height")) for t in bars}
    assert heights["2026-01-01 pooled model cost: $0.0009"] > heights["2026-01-03 pooled model cost: $0.00025"]
    assert not re.search(r"style=|https?://(?!www\.w3\.org)", svg)  # no inline style (CSP), no outside asset


def test_chart_of_an_empty_range_and_money_format() -> None:
    root = ET.fromstring(daily_chart(["2026-01-01"], {}, title="t"))
    assert [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None] == []
    assert usd(0) == "$0.00" and usd(1_500_000) == "$1.50" and usd(3) == "$0.000003"


def test_the_dashboard_routes_follow_the_setting(engine: Engine) -> None:
    from adaptive_plugin.adapters.selfservice_api import routers

    def paths(enabled: str) -> set[str]:
        settings = Settings.from_env({"ADAPTIVE_MASTER_KEYS": Settings.generate_master_key(), "ADAPTIVE_UI_ENABLED": enabled})
        hooks = SimpleNamespace(settings=settings, ctx=SimpleNamespace(engine=engine, settings=settings))
        return {route.path for router in routers(hooks) for route in router.routes}  # type: ignore[arg-type]

    assert "/adaptive/ui/login" in paths("true") and "/adaptive/self/usage" in paths("true")
    assert not any(p.startswith("/adaptive/ui") for p in paths("false")) and "/adaptive/self/usage" in paths("false")
