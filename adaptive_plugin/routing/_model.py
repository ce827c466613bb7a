"""The trained complexity model: two linear heads, a keyword-tier term and their calibration, from an .npz.

* the *full* head reads `[embedding (384), handcrafted features]`;
* the *features* head reads the handcrafted features alone, for when no embedding exists;
* the *keyword term* (`KeywordTerm`) combines LiteLLM's keyword complexity tier, which the
  adapters compute and pass in (this package never imports litellm), with the head for prompts
  that are not multiple-choice questions.

Each head predicts the strong-minus-weak quality gain of a prompt in units of its spread over
the training prompts; `calibrate` maps head plus keyword term to its quantile among the
training prompts, so a score of 0.8 means "needs a stronger model than 80% of the reference
prompts" for either head. The artifact records the feature names it was trained with and
loading fails if they differ from the code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from adaptive_plugin.errors import RoutingError
from adaptive_plugin.routing._features import FEATURE_NAMES
from adaptive_plugin.routing._task import TASK_TYPES

ARTIFACT_PATH = Path(__file__).with_name("artifacts") / "complexity.npz"
"""Where the shipped model lives; `python -m adaptive_plugin.routing.train` rebuilds it."""


@dataclass(frozen=True)
class LinearHead:
    """`raw = x @ weights + bias`, then a monotone map of `raw` through `knots` onto [0, 1]."""

    weights: np.ndarray
    bias: float
    knots: np.ndarray

    def raw(self, x: np.ndarray) -> np.ndarray | float:
        """The predicted gain of one vector (float) or of each row of a matrix."""
        out = x @ self.weights + self.bias
        return float(out) if np.ndim(out) == 0 else np.asarray(out)

    def calibrate(self, raw: np.ndarray | float) -> np.ndarray | float:
        """Quantile of `raw` among the training prompts' predictions, in [0, 1]."""
        levels = np.linspace(0.0, 1.0, self.knots.size)
        out = np.interp(raw, self.knots, levels)
        return float(out) if np.ndim(out) == 0 else np.asarray(out)


_CHOICES = FEATURE_NAMES.index("choices")
MULTIPLE_CHOICE_MIN = 0.3
"""`choices` feature at or above this (two or more lettered options) marks a multiple-choice
question: the keyword term leaves those alone (LiteLLM's tiers rank MMLU's questions below
our head: 0.649 against 0.724 held out)."""
HEAD_TASKS: tuple[str, ...] = ("math", "code")
"""Task types whose open prompts keep our head at full weight beside the tier: the embedding
head ranks maths and code (GSM8K 0.600 against LiteLLM's 0.530); on other open prompts
LiteLLM's score did better alone (AlpacaEval 0.492 against 0.479 with our head added)."""


@dataclass(frozen=True)
class KeywordTerm:
    """How LiteLLM's keyword tier combines with a head's raw prediction (`combine`).

    `tier` is LiteLLM's keyword complexity tier of the query text as a number: the tier's rank
    (SIMPLE 1 .. REASONING 4) plus its weighted score / 10 (see `adapters/keyword_tier.py`),
    standardised as `z = (tier - mean) / std`:

    * multiple-choice questions, or no tier: the head alone;
    * maths and code (`HEAD_TASKS`): `head + weight * z`;
    * other prompts: `open_head_weight * head + weight * z`.
    """

    weight: float
    mean: float
    std: float
    open_head_weight: float = 1.0

    def combine(self, head: float, tier: float | None, features: np.ndarray) -> float:
        if tier is None or self.weight == 0.0 or is_multiple_choice(features):
            return head
        z = (float(tier) - self.mean) / self.std
        scale = 1.0 if _task(features) in HEAD_TASKS else self.open_head_weight
        return scale * head + self.weight * z

    def combine_many(self, head: np.ndarray, tiers: np.ndarray, features: np.ndarray) -> np.ndarray:
        """`combine` for each row (a NaN tier: no tier)."""
        if self.weight == 0.0:
            return np.asarray(head, dtype=np.float64)
        applies = (features[:, _CHOICES] < MULTIPLE_CHOICE_MIN) & ~np.isnan(tiers)
        task_cols = features[:, len(FEATURE_NAMES) - len(TASK_TYPES):]
        tasks = np.asarray(TASK_TYPES)[np.argmax(task_cols, axis=1)]
        scale = np.where(np.isin(tasks, HEAD_TASKS), 1.0, self.open_head_weight)
        z = (np.nan_to_num(tiers, nan=self.mean) - self.mean) / self.std
        return np.where(applies, scale * head + self.weight * z, head)


def is_multiple_choice(features: np.ndarray) -> bool:
    """Whether a `handcrafted_features` vector is of a question with two or more lettered options."""
    return bool(features[_CHOICES] >= MULTIPLE_CHOICE_MIN)


def _task(features: np.ndarray) -> str:
    return TASK_TYPES[int(np.argmax(features[len(FEATURE_NAMES) - len(TASK_TYPES):]))]


NO_KEYWORD_TERM = KeywordTerm(weight=0.0, mean=0.0, std=1.0)


@dataclass(frozen=True)
class ComplexityModel:
    """Both heads plus what they were trained on (`info`, free-form JSON)."""

    full: LinearHead
    features: LinearHead
    embedding_dim: int
    feature_names: tuple[str, ...]
    info: dict[str, Any] = field(default_factory=dict)
    keyword: KeywordTerm = NO_KEYWORD_TERM

    def save(self, path: Path) -> None:
        """Write the model as a compressed .npz (float32 weights)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("wb") as fh:
            np.savez_compressed(
                fh,
                full_weights=self.full.weights.astype(np.float32),
                full_bias=np.float64(self.full.bias),
                full_knots=self.full.knots.astype(np.float64),
                features_weights=self.features.weights.astype(np.float32),
                features_bias=np.float64(self.features.bias),
                features_knots=self.features.knots.astype(np.float64),
                embedding_dim=np.int64(self.embedding_dim),
                feature_names=np.asarray(self.feature_names),
                keyword=np.asarray([self.keyword.weight, self.keyword.mean, self.keyword.std, self.keyword.open_head_weight],
                                   dtype=np.float64),
                info=np.asarray(json.dumps(self.info, sort_keys=True)),
            )

    @classmethod
    def load(cls, path: Path = ARTIFACT_PATH) -> ComplexityModel:
        """Read and check an artifact written by `save`; raise `RoutingError` if unusable."""
        try:
            with np.load(path, allow_pickle=False) as data:
                names = tuple(str(n) for n in data["feature_names"])
                model = cls(
                    full=LinearHead(data["full_weights"].astype(np.float32), float(data["full_bias"]),
                                    data["full_knots"].astype(np.float64)),
                    features=LinearHead(data["features_weights"].astype(np.float32), float(data["features_bias"]),
                                        data["features_knots"].astype(np.float64)),
                    embedding_dim=int(data["embedding_dim"]),
                    feature_names=names,
                    info=json.loads(str(data["info"])),
                    keyword=KeywordTerm(*(float(v) for v in data["keyword"])),
                )
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise RoutingError(f"cannot read the complexity model {path}: {exc}") from exc
        if names != FEATURE_NAMES:
            raise RoutingError(
                f"the complexity model {path} was trained with other features; "
                "rebuild it with `python -m adaptive_plugin.routing.train`"
            )
        if model.full.weights.shape != (model.embedding_dim + len(names),) or model.features.weights.shape != (
            len(names),
        ):
            raise RoutingError(f"the complexity model {path} has weights of the wrong shape")
        return model


@lru_cache(maxsize=4)
def load_model(path: Path = ARTIFACT_PATH) -> ComplexityModel:
    """The model at `path`, read once per process and path."""
    return ComplexityModel.load(path)
