#!/usr/bin/env python3
"""Access-control latency: ``Verifier.verify`` on a 1.5 s utterance, ``identify`` against 1,000 voiceprints.

Model: the demo ECAPA of hparams/pretrain_demo.yaml (C=128, 192-dim, random weights; latency does not depend
on the weights), exported to a temporary folder by ``bench_embeddings.make_model``, or an exported folder given
with ``--model`` (copied, so the cohort written for AS-norm stays out of it). CPU.

- **verify**: one 1.5 s 16 kHz file per call, everything a door unit does per claim: read and check the file,
  embed, read the voiceprint from SQLite, score, then settle and log the claim (one write transaction: replay and
  lockout checks, the event row). ``--calls`` timed calls after one warm-up; median and p95.
- **identify**: 1,000 synthetic voiceprints (random unit vectors, written through ``VoiceprintStore.save``, one
  transaction each), then ``identify`` with top-5: all voiceprints read and scored in one product. Also timed:
  embedding alone, so the database + scoring share is visible.
- Both again with AS-norm (a 1,000-speaker cohort, top-100).

Usage::

    python benchmarks/bench_verifier.py [--calls 100] [--speakers 1000] [--threads 1] [--model FOLDER]
"""
import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import List

import numpy as np
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from bench_embeddings import make_model, timings  # noqa: E402
from speechbrain_ext.export import write_cohort  # noqa: E402
from speechbrain_ext.access.verifier import Verifier  # noqa: E402
from speechbrain_ext.access.store import VoiceprintStore  # noqa: E402
from speechbrain_ext.model_folder import model_hash  # noqa: E402


def row(name: str, seconds: List[float]) -> str:
    """Table row: calls, median and p95 in ms."""
    ms = [1000 * s for s in seconds]
    return f"| {name} | {len(ms)} | {np.median(ms):.1f} | {np.percentile(ms, 95):.1f} |"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=100, help="timed verify calls")
    p.add_argument("--identify_calls", type=int, default=30, help="timed identify calls")
    p.add_argument("--speakers", type=int, default=1000, help="enrolled voiceprints for identify")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--model", default=None, help="exported model folder (default: random demo ECAPA)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = shutil.copytree(args.model, tmp / "model") if args.model else make_model(tmp)
        if not (model / "threshold.json").is_file():  # any value: decisions do not change the timing
            (model / "threshold.json").write_text('{"threshold": 0.5}')
        rng = np.random.default_rng(0)
        wav = tmp / "claim_1.5s.wav"
        sf.write(wav, (0.1 * rng.standard_normal(24000)).astype("float32"), 16000, subtype="PCM_16")

        db = tmp / "vp.db"
        with Verifier(model, db) as verifier:
            verifier.enroll("door_user", [wav])
            dim = len(verifier.store.voiceprint("door_user"))
        start = time.perf_counter()
        with VoiceprintStore(db, model_hash(model), create=False) as store:
            for i in range(args.speakers - 1):
                store.save(f"synthetic{i:04d}", rng.standard_normal((1, dim)), ["synthetic"])
        write_s = time.perf_counter() - start

        print(f"model: {args.model or 'demo ECAPA C=128 (random weights)'}, embedding dim {dim}, "
              f"CPU, {args.threads} thread(s); {args.speakers} voiceprints written in {write_s:.1f} s "
              f"({1000 * write_s / max(args.speakers - 1, 1):.1f} ms per enrolment transaction)")
        print("| operation | calls | median (ms) | p95 (ms) |")
        print("|---|---:|---:|---:|")
        with Verifier(model, db) as verifier:
            print(row("embed 1.5 s file (read, check, ECAPA)", timings(lambda: verifier.embed(wav), args.calls)))
            print(row("verify 1.5 s claim (scored, checked, logged), cosine", timings(lambda: verifier.verify("door_user", wav), args.calls)))
            print(row(f"identify top-5 of {args.speakers}, cosine",
                      timings(lambda: verifier.identify(wav, 5), args.identify_calls)))
        write_cohort(model, rng.standard_normal((1000, dim)), threshold=3.0, top_n=100)
        with Verifier(model, db) as verifier:  # threshold from the cohort file
            print(row("verify 1.5 s claim, AS-norm (cohort 1000, top 100)",
                      timings(lambda: verifier.verify("door_user", wav), args.calls)))
            print(row(f"identify top-5 of {args.speakers}, AS-norm",
                      timings(lambda: verifier.identify(wav, 5), args.identify_calls)))


if __name__ == "__main__":
    main()
