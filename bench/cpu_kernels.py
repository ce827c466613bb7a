"""The derived embedding model on CPUs with and without VNNI: which integer kernel, and what it costs.

    # on an AVX2 CPU without VNNI, or emulated: valgrind's synthetic CPU has AVX2 and neither
    # AVX-512 nor VNNI (it reproduced an AMD EPYC's figures to four decimals: bench/RESULTS.md)
    valgrind --tool=none .venv/bin/python bench/cpu_kernels.py emit --out DIR [--sets cache,arena,dev]
    # on the machine itself (natively), emit the same sets there, then compare:
    .venv/bin/python bench/cpu_kernels.py emit --out NATIVE_DIR --kernels u8s8,float
    .venv/bin/python bench/cpu_kernels.py report --foreign DIR --native NATIVE_DIR

`emit` embeds each text set one text at a time (the request path) with each kernel of the
derived default model (`u8s8`: its int8 weights as derived, the kernel a VNNI CPU computes
exactly and an AVX2 CPU saturates; `u8u8`: the same products with the weights shifted into
uint8, `_kernel.unsigned_weights`), or with the float source model (`float`). It saves every
100 texts and resumes where it stopped (under valgrind one text takes about 0.7 s).

Sets: `cache` (every distinct text of cache/dev.jsonl), `arena` (routing/arena_bench.jsonl, the
source the shipped router never saw), `dev` (every 10th row of routing/dev.jsonl). The texts are
those the proxy embeds (`embedding_text(query_text(...))`).

`report` prints, for each foreign kernel: the cosine to the float model and to the native u8s8
vectors (mean, 1st percentile, minimum) per set; the semantic cache on the dev pairs (report half
at the default threshold, and at the threshold of equal tune-half hit rate, `bench/models.py`'s
method); and the shipped router on the arena and dev sets (the tier it picks with each set of
vectors, how often it differs from the native pick, and arena APGR).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from adaptive_plugin.embedding import Embedder, default_model_dir, embedding_text, query_text  # noqa: E402

SETS = ("cache", "arena", "dev")
KERNELS = ("u8s8", "u8u8", "float")
CHUNK = 100


def texts_of(data: Path, name: str) -> list[str]:
    if name == "cache":
        rows = [json.loads(line) for line in (data / "cache" / "dev.jsonl").read_text().splitlines() if line.strip()]
        return sorted({embedding_text(t) for r in rows for t in (r["a"], r["b"])})
    path = data / "routing" / ("arena_bench.jsonl" if name == "arena" else "dev.jsonl")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = rows if name == "arena" else rows[::10]
    return [embedding_text(query_text(r["messages"])) for r in rows]


def embedder_for(kernel: str, directory: Path) -> Embedder:
    if kernel == "float":
        return Embedder.from_directory(directory, threads=1, quantized=False)
    return Embedder.from_directory(directory, threads=1, kernel=kernel, check=False)


def emit(args: argparse.Namespace) -> int:
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.sets.split(","):
        texts = texts_of(args.data, name)
        (args.out / f"{name}-texts.json").write_text(json.dumps(texts))
        for kernel in args.kernels.split(","):
            path = args.out / f"{name}-{kernel}.npy"
            done = np.load(path) if path.is_file() else np.zeros((0, 384), np.float32)
            if len(done) >= len(texts):
                continue
            embedder = embedder_for(kernel, args.model_dir)
            print(f"{name} {kernel}: {embedder.numerics}; {len(done)} of {len(texts)} done", flush=True)
            rows = list(done)
            started = time.perf_counter()
            for i in range(len(done), len(texts)):
                rows.append(embedder.embed_one(texts[i]))
                if len(rows) % CHUNK == 0 or len(rows) == len(texts):
                    np.save(path.with_suffix(".partial.npy"), np.stack(rows))
                    os.replace(path.with_suffix(".partial.npy"), path)
                    rate = (time.perf_counter() - started) / (i + 1 - len(done))
                    print(f"  {len(rows)} / {len(texts)} ({rate:.2f} s/text)", flush=True)
    return 0


def _cosines(a: np.ndarray, b: np.ndarray) -> str:
    c = (a * b).sum(axis=1)
    return f"{c.mean():.5f} / {np.percentile(c, 1):.5f} / {c.min():.5f}"


def report(args: argparse.Namespace) -> int:
    from bench.models import DEFAULT_T, cache_curves, matched

    foreign_kernels = [k for k in ("u8s8", "u8u8") if (args.foreign / f"cache-{k}.npy").is_file()]
    print("## cosine (mean / 1st percentile / min), foreign vectors against native ones\n")
    print("| set | texts | foreign kernel | to native float | to native u8s8 |\n|---|---|---|---|---|")
    vectors: dict[tuple[str, str, str], np.ndarray] = {}
    for name in SETS:
        native = {k: _load(args.native, name, k) for k in ("u8s8", "float")}
        for kernel in ("u8s8", "u8u8", "float"):
            foreign = _load(args.foreign, name, kernel)
            if foreign is None or native["float"] is None or native["u8s8"] is None:
                continue
            n = len(foreign)
            vectors[("foreign", name, kernel)] = foreign
            print(f"| {name} | {n} | {kernel} | {_cosines(foreign, native['float'][:n])} | "
                  f"{_cosines(foreign, native['u8s8'][:n])} |")
        for kernel, v in native.items():
            if v is not None:
                vectors[("native", name, kernel)] = v
    if ("native", "cache", "u8s8") in vectors:
        print("\n## semantic cache on cache/dev.jsonl (report half: hit rate / precision / wrong hits)\n")
        print("| vectors | at t=%.2f | at equal hit rate (t) |\n|---|---|---|" % DEFAULT_T)
        rows = [json.loads(line) for line in (args.data / "cache" / "dev.jsonl").read_text().splitlines() if line.strip()]
        texts = json.loads((args.native / "cache-texts.json").read_text())
        first: dict[str, Any] = {}
        for key in [("native", "cache", "u8s8"), ("native", "cache", "float"),
                    *[("foreign", "cache", k) for k in (*foreign_kernels, "float")]]:
            v = vectors.get(key)
            if v is None or len(v) < len(texts):
                continue
            at = {t: i for i, t in enumerate(texts)}
            a = v[[at[embedding_text(r["a"])] for r in rows]]
            b = v[[at[embedding_text(r["b"])] for r in rows]]
            curves = cache_curves(rows, a, b)
            first = first or curves
            t = matched(curves, first["tune"][DEFAULT_T][0])
            r0, p0, w0 = curves["report"][DEFAULT_T]
            r1, p1, w1 = curves["report"][t]
            print(f"| {key[0]} {key[2]} | {r0:.3f} / {p0:.3f} / {w0} | {r1:.3f} / {p1:.3f} / {w1} ({t:.2f}) |")
    _routing_report(args, vectors)
    return 0


def _routing_report(args: argparse.Namespace, vectors: dict[tuple[str, str, str], np.ndarray]) -> None:
    """The shipped router's strong-model score per prompt with each set of vectors: how far it moves
    from the native u8s8 score, how often the strong/weak call at the median flips, arena APGR."""
    from adaptive_plugin.routing import load_model
    from adaptive_plugin.routing.quality import apgr
    from adaptive_plugin.routing.train import handcrafted_features, keyword_tiers

    model = load_model()
    print("\n## shipped router: its score per prompt, native u8s8 against each set of vectors\n")
    print("| set | vectors | prompts | score moves > 0.05 | strong call flips (median cut) | arena APGR |")
    print("|---|---|---|---|---|---|")
    for name in ("arena", "dev"):
        path = args.data / "routing" / ("arena_bench.jsonl" if name == "arena" else "dev.jsonl")
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        rows = rows if name == "arena" else rows[::10]
        if ("native", name, "u8s8") not in vectors:
            continue
        texts = [query_text(r["messages"]) for r in rows]
        features = np.stack([handcrafted_features(r["messages"], text=t) for r, t in zip(rows, texts, strict=True)])
        tiers = keyword_tiers(texts)

        def score(v: np.ndarray) -> np.ndarray:
            n = len(v)
            raw = model.keyword.combine_many(model.full.raw(np.hstack([v, features[:n]])), tiers[:n], features[:n])
            return np.asarray(model.full.calibrate(raw), dtype=np.float64)

        native = score(vectors[("native", name, "u8s8")])
        cut = float(np.median(native))
        for key in [("native", name, "u8s8"), ("native", name, "float"), *[("foreign", name, k) for k in KERNELS]]:
            if key not in vectors:
                continue
            s = score(vectors[key])
            n = len(s)
            moved = float(np.mean(np.abs(s - native[:n]) > 0.05))
            flips = float(np.mean((s >= cut) != (native[:n] >= cut)))
            quality = ""
            if name == "arena":
                labelled = np.array([r.get("weak_score") is not None and r.get("strong_score") is not None
                                     for r in rows[:n]])
                weak = np.array([float(r["weak_score"]) for r, ok in zip(rows[:n], labelled) if ok])
                strong = np.array([float(r["strong_score"]) for r, ok in zip(rows[:n], labelled) if ok])
                quality = f"{apgr(s[labelled], weak=weak, strong=strong):.3f} ({int(labelled.sum())} labelled)"
            print(f"| {name} | {key[0]} {key[2]} | {n} | {moved:.3f} | {flips:.3f} | {quality} |")


def _load(directory: Path, name: str, kernel: str) -> np.ndarray | None:
    path = directory / f"{name}-{kernel}.npy"
    return np.load(path) if path.is_file() else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    e = sub.add_parser("emit", help="embed the text sets with each kernel on this CPU")
    e.add_argument("--out", type=Path, required=True)
    e.add_argument("--sets", default=",".join(SETS))
    e.add_argument("--kernels", default="u8s8,u8u8")
    r = sub.add_parser("report", help="compare vectors emitted on another CPU with this CPU's")
    r.add_argument("--foreign", type=Path, required=True)
    r.add_argument("--native", type=Path, required=True)
    for p in (e, r):
        p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
        p.add_argument("--model-dir", type=Path, default=default_model_dir())
    args = parser.parse_args(argv)
    return emit(args) if args.command == "emit" else report(args)


if __name__ == "__main__":
    raise SystemExit(main())
