"""Benchmark: EER and minDCF by sorting vs SpeechBrain's ``metric_stats``.

Random trials with 0.5 % targets (CN-Celeb's eval list has ~0.5 %): target scores ~ N(2, 1), non-target
scores ~ N(0, 1). Each (implementation, metric, size) runs in its own subprocess, single-threaded
(``torch.set_num_threads(1)``), and reports wall time and peak extra memory: the process's peak RSS
(``VmHWM``, reset through ``/proc/self/clear_refs`` after the data is made) minus its RSS before the call.
Linux only.

SpeechBrain is run on 1k, 4k, 16k, ... trials until a run exceeds the time cap or its predicted memory exceeds
the memory cap: ``minDCF`` compares the scores with ~2N thresholds at once (a ``[2N, N]`` float32 copy, a bool
mask and temporaries: ~26 N^2 bytes, 6.3 GB measured at 16k trials), so it is never started above the cap.
``EER`` loops over ~2N thresholds in Python (O(N^2) time, O(N) memory).

Usage::

    python benchmarks/bench_metrics.py [--size 3500000] [--time-cap 60] [--memory-cap-gb 8]
"""
import argparse
import functools
import json
import subprocess
import sys
import time
from typing import Dict, Optional

TARGET_FRACTION = 0.005
SB_SIZES = [1_000, 4_000, 16_000, 64_000, 256_000, 1_024_000]


def make_trials(n: int, seed: int = 0):
    """Random scores [n] (float32) and 0/1 labels [n]."""
    import numpy as np

    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < TARGET_FRACTION).astype(np.int64)
    labels[:2] = [0, 1]
    scores = rng.normal(2.0 * labels, 1.0).astype(np.float32)
    return scores, labels


def _memory_kb(field: str) -> int:
    """``VmRSS`` or ``VmHWM`` of this process, kB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def worker(implementation: str, metric: str, n: int) -> None:
    """Time one metric on n trials; print a JSON line."""
    import torch

    torch.set_num_threads(1)
    scores, labels = make_trials(n)
    if implementation == "ours":
        from speechbrain_ext.metrics import eer, min_dcf

        inputs = (scores, labels)
        call = eer if metric == "eer" else functools.partial(min_dcf, p_target=0.01)
    else:
        from speechbrain.utils.metric_stats import EER, minDCF

        inputs = (torch.from_numpy(scores[labels == 1]), torch.from_numpy(scores[labels == 0]))
        call = EER if metric == "eer" else functools.partial(minDCF, p_target=0.01)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the current RSS
    rss_before = _memory_kb("VmRSS")
    start = time.perf_counter()
    value, _ = call(*inputs)
    seconds = time.perf_counter() - start
    if implementation == "speechbrain" and metric == "mindcf":
        value /= 0.01  # normalise like ours: min(c_miss * p, c_fa * (1 - p)) = 0.01
    peak_mb = (_memory_kb("VmHWM") - rss_before) / 1024
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "value": value}))


def run(implementation: str, metric: str, n: int, time_cap: float) -> Optional[Dict]:
    """Run a worker subprocess; None if it ran past ``time_cap`` seconds."""
    command = [sys.executable, __file__, "--worker", implementation, metric, str(n)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=time_cap, check=True)
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as error:
        raise RuntimeError(f"{implementation} {metric} n={n} failed:\n{error.stderr}") from None
    return json.loads(done.stdout.strip().splitlines()[-1])


def sb_min_dcf_bytes(n: int) -> float:
    """Predicted peak bytes of SpeechBrain's minDCF on n trials: ~2n thresholds x n_nontarget x 13 B (measured)."""
    return 2 * n * (1 - TARGET_FRACTION) * n * 13


def cell(result: Optional[Dict], reason: str) -> str:
    """Table cells for one result: time, peak memory, value."""
    if result is None:
        return f"| {reason} | | "
    return f"| {result['seconds']:.3f} | {result['peak_mb']:.1f} | {result['value']:.5f} "


def main() -> None:
    """Run every configuration and print a markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=3_500_000, help="trials for our implementation")
    parser.add_argument("--time-cap", type=float, default=60.0, help="seconds per SpeechBrain run")
    parser.add_argument("--memory-cap-gb", type=float, default=8.0, help="SpeechBrain minDCF memory cap")
    args = parser.parse_args()

    def ours(n: int) -> str:
        results = [run("ours", metric, n, args.time_cap) for metric in alive]
        return f"| ours | {n:,} {cell(results[0], 'timeout')}{cell(results[1], 'timeout')}|"

    rows = []
    alive = {"eer": True, "mindcf": True}
    for n in SB_SIZES:
        if n >= args.size or not any(alive.values()):
            break
        sb = {}
        for metric in alive:
            if not alive[metric]:
                sb[metric] = (None, "not run: stopped at a smaller size")
            elif metric == "mindcf" and sb_min_dcf_bytes(n) > args.memory_cap_gb * 2**30:
                sb[metric] = (None, f"not run: needs ~{sb_min_dcf_bytes(n) / 2**30:.0f} GB")
                alive[metric] = False
            else:
                result = run("speechbrain", metric, n, args.time_cap)
                sb[metric] = (result, f"killed after {args.time_cap:.0f} s")
                alive[metric] = result is not None
        rows.append(f"| speechbrain | {n:,} {cell(*sb['eer'])}{cell(*sb['mindcf'])}|")
        if any(result is not None for result, _ in sb.values()):
            rows.append(ours(n))
    rows.append(ours(args.size))

    print(f"Random trials, {100 * TARGET_FRACTION:g} % targets; one thread; peak = extra RSS during the call.")
    print("minDCF at p_target 0.01, normalised (SpeechBrain's value divided by 0.01).\n")
    print("| implementation | trials | EER s | EER peak MB | EER | minDCF s | minDCF peak MB | minDCF |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    print("\n".join(rows))
    print(f"\nSpeechBrain minDCF on {args.size:,} trials would need ~{sb_min_dcf_bytes(args.size) / 2**40:.0f} TB.")


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        main()
