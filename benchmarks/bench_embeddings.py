#!/usr/bin/env python3
"""Embedding throughput: our length-bucketed extraction vs ``encode_batch`` per file.

Same model (the demo ECAPA of hparams/pretrain_demo.yaml, random weights, exported to a temporary model
folder), same files, CPU. Two file sets:

- ``crops``: test-duration crops, ``--files`` clips each of 1, 2 or 3 s (what the short-duration conditions
  embed: many equal lengths);
- ``mixed``: the same number of files of random lengths 1-6 s (no two equal, so bucketing falls back to
  batches of one).

Throughput is seconds of audio per second of wall time, file reading included on both sides. Usage::

    python benchmarks/bench_embeddings.py [--files 48] [--batch_size 16] [--threads 2]
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.classifiers import EncoderClassifier

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from speechbrain_ext.builder import compose  # noqa: E402
from speechbrain_ext.model_folder import load_extractor  # noqa: E402
from speechbrain_ext.embeddings import embed_rows  # noqa: E402
from speechbrain_ext.export import export_model  # noqa: E402
from speechbrain_ext.manifest import ManifestRow  # noqa: E402

TRAIN_YAML = ROOT / "hparams" / "pretrain_demo.yaml"


def make_model(tmp: Path) -> Path:
    """A randomly initialised demo model, saved and exported; returns the model folder."""
    hp = load_hyperpyyaml(compose(TRAIN_YAML, {"data_folder": str(tmp), "output_folder": str(tmp / "run"),
                                               "out_n_neurons": 4}))
    hp["checkpointer"].save_checkpoint()
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(["a", "b", "c", "d"])
    encoder.save(Path(hp["save_folder"]) / "label_encoder.txt")
    return export_model(TRAIN_YAML, hp["save_folder"], tmp / "model")


def make_files(folder: Path, lengths) -> list:
    """Noise files of the given lengths (samples) in a new ``folder``; returns manifest rows."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate(lengths):
        path = folder / f"f{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(n)).astype("float32"), 16000)
        rows.append(ManifestRow(f"f{i}", str(path), 0, int(n)))
    return rows


def timings(call: Callable[[], object], n: int) -> List[float]:
    """Wall times (s) of ``n`` calls of ``call()``, after one untimed warm-up call."""
    call()
    out = []
    for _ in range(n):
        start = time.perf_counter()
        call()
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--files", type=int, default=48)
    p.add_argument("--batch_size", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=2, help="timed runs per side (best kept)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    rng = np.random.default_rng(1)
    sets = {
        "crops": [16000 * (1 + i % 3) for i in range(args.files)],
        "mixed": rng.choice(np.arange(16000, 96000), size=args.files, replace=False).tolist(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_folder = make_model(tmp)
        extractor = load_extractor(model_folder / "hyperparams.yaml", model_folder, args.batch_size)
        model = EncoderClassifier.from_hparams(source=str(model_folder), savedir=str(tmp / "sb"))

        @torch.no_grad()
        def per_file(rows) -> None:
            """SpeechBrain's ``encode_batch`` on one file at a time."""
            for row in rows:
                model.encode_batch(torch.from_numpy(sf.read(row.wav, dtype="float32")[0]).unsqueeze(0))

        print(f"model: demo ECAPA (random weights), {args.files} files per set, batch {args.batch_size}, "
              f"{args.threads} threads, CPU, best of {args.repeats} after a warm-up")
        print("| set | audio (s) | ours (s audio/s) | encode_batch per file (s audio/s) | ratio |")
        print("|---|---:|---:|---:|---:|")
        for name, lengths in sets.items():
            rows = make_files(tmp / name, lengths)
            audio = sum(lengths) / 16000
            baseline = min(timings(lambda: per_file(rows), args.repeats))  # wall seconds
            batched = min(timings(lambda: embed_rows(rows, extractor, "concat", cache_dir=None, name="ours"),
                                  args.repeats))  # length-bucketed, no cache
            print(f"| {name} | {audio:.0f} | {audio / batched:.1f} | {audio / baseline:.1f} | "
                  f"{baseline / batched:.2f}x |")


if __name__ == "__main__":
    main()
