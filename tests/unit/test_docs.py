"""Every setting, error class and metric is documented in docs/ (datasette's test_settings_are_documented)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics import MetricWrapperBase

from adaptive_plugin import errors, metrics
from adaptive_plugin.config import ENV_PREFIX, Settings
from tests.unit._trees import drawn_tree

DOCS = Path(__file__).resolve().parents[2] / "docs"


def sections(path: Path) -> dict[str, str]:
    """`## heading` -> the text under it."""
    text = path.read_text()
    parts = re.split(r"^## +(.+?)\s*$", text, flags=re.M)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


CONFIG = sections(DOCS / "configuration.md")
ERRORS_DOC = DOCS / "errors.md"
ERRORS = sections(ERRORS_DOC)
METRICS = sections(DOCS / "metrics.md")

ERROR_CLASSES = {name: getattr(errors, name) for name in errors.__all__}


def exposed_name(metric: MetricWrapperBase) -> str:
    return metric._name + "_total" if isinstance(metric, Counter) else metric._name  # type: ignore[attr-defined]


METRIC_OBJECTS = {exposed_name(m): m for m in vars(metrics).values() if isinstance(m, MetricWrapperBase)}


# -- configuration ---------------------------------------------------------------------------


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_setting_is_documented(field: str) -> None:
    assert field in CONFIG, f"docs/configuration.md has no '## {field}' heading"
    body = CONFIG[field]
    assert f"`{ENV_PREFIX}{field.upper()}`" in body
    assert "- Type:" in body and "- Default:" in body


@pytest.mark.parametrize("field", list(Settings.model_fields))
def test_documented_default_matches_the_code(field: str) -> None:
    default = Settings.model_fields[field].default
    line = next(line for line in CONFIG[field].splitlines() if line.startswith("- Default:"))
    if default is None:
        assert "unset" in line
    else:
        shown = str(default).lower() if isinstance(default, bool) else str(default)
        assert f"`{shown}`" in line


def test_no_stale_settings_in_docs() -> None:
    assert set(CONFIG) - set(Settings.model_fields) == set()


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(ERROR_CLASSES))
def test_error_is_documented_with_status_and_code(name: str) -> None:
    cls = ERROR_CLASSES[name]
    assert name in ERRORS, f"docs/errors.md has no '## {name}' heading"
    assert f"Status {cls.status_code}, code `{cls.code}`." in ERRORS[name]


def test_error_tree_drawing_matches_the_classes() -> None:
    text = ERRORS_DOC.read_text()
    drawing = text.split("```", 2)[1]
    parents = drawn_tree(drawing)
    drawn = {
        m.group("name"): (m.group("name"), int(m.group("status")), m.group("code"))
        for m in re.finditer(r"(?P<name>\w+Error)\s+(?P<status>\d{3})\s+(?P<code>[a-z_]+)\s*$", drawing, re.MULTILINE)
    }
    assert set(drawn) == set(ERROR_CLASSES)
    for name, cls in ERROR_CLASSES.items():
        assert drawn[name][1:] == (cls.status_code, cls.code), name
        expected_parent = None if cls is errors.AdaptiveError else cls.__mro__[1].__name__
        assert parents[name] == expected_parent, name


def test_no_stale_errors_in_docs() -> None:
    assert set(ERRORS) - set(ERROR_CLASSES) == set()


# -- metrics ---------------------------------------------------------------------------------


def test_metrics_were_found() -> None:
    assert len(METRIC_OBJECTS) >= 10


@pytest.mark.parametrize("name", sorted(METRIC_OBJECTS))
def test_metric_is_documented_with_type_and_labels(name: str) -> None:
    metric = METRIC_OBJECTS[name]
    assert name in METRICS, f"docs/metrics.md has no '## {name}' heading"
    body = METRICS[name]
    kind = {Counter: "counter", Gauge: "gauge", Histogram: "histogram"}[type(metric)]
    assert f"- Type: {kind}" in body
    labels_line = next(line for line in body.splitlines() if line.startswith("- Labels:"))
    for label in metric._labelnames:  # type: ignore[attr-defined]
        if label == "project":
            assert "*project label*" in labels_line
        else:
            assert f"`{label}`" in labels_line, label
    if not metric._labelnames:  # type: ignore[attr-defined]
        assert labels_line == "- Labels: none"


def test_no_stale_metrics_in_docs() -> None:
    assert set(METRICS) - set(METRIC_OBJECTS) == set()


def test_metric_names_follow_the_convention() -> None:
    for name, metric in METRIC_OBJECTS.items():
        assert name.startswith("adaptive_"), name
        if isinstance(metric, Histogram):
            assert name.endswith("_seconds"), name
        if isinstance(metric, Gauge):
            assert metric._multiprocess_mode != "all", name  # type: ignore[attr-defined]


# -- the threat model ------------------------------------------------------------------------


def test_every_security_test_module_is_named_in_the_threat_model() -> None:
    """docs/security.md names the test that closes each door: every attack-class module is
    there, and every test path it names exists."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "docs" / "security.md").read_text()
    modules = sorted(p.relative_to(root).as_posix() for p in (root / "tests" / "security").glob("test_*.py"))
    assert modules and [m for m in modules if f"`{m}`" not in text] == []
    named = set(re.findall(r"`(tests/[\w/.]+)`", text))
    assert sorted(n for n in named if not (root / n).exists()) == []
