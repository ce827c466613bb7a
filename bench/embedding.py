"""What each step of the embedding model's derivation buys, timed side by side in one run.

    python bench/embedding.py [--n 200] [--rounds 6] [--threads 1]

Builds, in a temporary directory from the fetched model's pinned files: the wheel's model,
the integer model of recipe 1 (quantized only) and of recipe 2 (quantized, attention and GELU
fused; what `fetch-model` derives now). Each is loaded twice: with onnxruntime's
SkipLayerNormalization fusion (the old session options) and without it (the plugin's).
Reports the p50 of `Embedder.embed_one` over `--n` bench prompts per round, rounds
interleaved, the median round, and each one's lowest cosine to the wheel's model's vectors.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import cpu_speed_ms, machine_note  # noqa: E402
from bench.overhead import prompt  # noqa: E402


def build(root: Path) -> dict[str, Path]:
    """The three model files, each in a model directory of its own (name -> model file)."""
    from adaptive_plugin.embedding import _fetch, default_model_dir

    files: dict[str, Path] = {}
    for recipe in (1, 2):
        directory = root / f"recipe-{recipe}"
        directory.mkdir()
        for _req, _member, name, _digest in _fetch.MODEL_FILES:
            shutil.copyfile(default_model_dir() / name, directory / name)
        real_fused = _fetch._fused
        if recipe == 1:
            _fetch._fused = lambda _directory, unfused: unfused  # recipe 1: nothing fused
        try:
            derived = _fetch.derive_quantized(directory)
        finally:
            _fetch._fused = real_fused
        if derived is None:
            raise SystemExit(f"recipe {recipe}: the derived model drifted from the source model")
        files[f"quantized (recipe {recipe})" if recipe == 1 else "quantized + fused (recipe 2)"] = derived
    return {"wheel's model": root / "recipe-1" / "model.onnx", **files}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    from adaptive_plugin.embedding import Embedder, _embedder

    texts = [prompt("emb", i) for i in range(args.n)]
    with tempfile.TemporaryDirectory(prefix="adaptive-bench-embedding-") as tmp:
        files = build(Path(tmp))
        embedders: dict[str, Embedder] = {}
        for name, path in files.items():
            for disabled in ((), ("SkipLayerNormFusion",)):
                _embedder.DISABLED_OPTIMIZERS = disabled
                label = f"{name}, {'without' if disabled else 'with'} SkipLayerNorm fusion"
                embedders[label] = Embedder.from_directory(path.parent, threads=args.threads, model_file=path)
        _embedder.DISABLED_OPTIMIZERS = ("SkipLayerNormFusion",)
        reference = next(iter(embedders.values()))
        rounds: dict[str, list[float]] = {label: [] for label in embedders}
        for _ in range(args.rounds):
            for label, embedder in embedders.items():
                times = []
                for text in texts:
                    started = time.perf_counter()
                    embedder.embed_one(text)
                    times.append((time.perf_counter() - started) * 1000)
                rounds[label].append(statistics.median(times))
        tokens = reference._feed([texts[0]])["input_ids"].shape[1]
        print(f"# embed_one p50, {args.n} prompts of about {tokens} tokens, {args.threads} onnxruntime thread(s), "
              f"{args.rounds} interleaved rounds")
        print(f"# {machine_note()}; CPU speed figure {cpu_speed_ms():.0f} ms")
        print("| model | session | p50 ms (median round) | rounds | lowest cosine to the wheel's model |")
        print("|---|---|---|---|---|")
        for label, embedder in embedders.items():
            name, session = label.split(", ")
            cosine = min(float(reference.embed_one(t) @ embedder.embed_one(t)) for t in texts[:50])
            print(f"| {name} | {session} | {statistics.median(rounds[label]):.2f} | "
                  f"{' '.join(f'{x:.2f}' for x in rounds[label])} | {cosine:.4f} |")


if __name__ == "__main__":
    main()
