#!/usr/bin/env python3
"""The prompted door against a replay attack: each test speaker's own recordings handed in against fresh prompts.

For every full-length test utterance (``test.csv`` rows with a transcript) of a prepared split, the exported
model's digit recogniser (``<model>/digits``) transcribes it once; then ``--prompts`` fresh prompts per utterance
(6 digits from ``secrets``, as ``speechbrain-ext challenge`` draws them) are checked against what was heard, as
the door checks them (``digits.digit_errors <= --max_digit_errors``). Printed, each with its 95 % interval:

- the replay-attack success rate: the share of (recording, fresh prompt) pairs whose digits pass, i.e. attacks
  that the digit check lets through to the speaker check (Clopper-Pearson interval; a speaker-bootstrap one is
  degenerate when nothing passes);
- the false rejection the digit check adds: genuine utterances whose own transcript would be refused
  (speaker-bootstrap interval, ``digits.digit_metrics``);
- the time the recogniser adds to a claim (median over the utterances, one CPU thread unless ``--threads``).

Usage::

    python benchmarks/bench_prompted.py --model demo_output/model --prep_folder demo_output/transfer/manifests
"""
import argparse
import secrets
import statistics
import time

import torch
from scipy.stats import beta

from speechbrain_ext.digits import digit_errors, digit_metrics, load_recognizer
from speechbrain_ext.manifest import read_manifest


def clopper_pearson(successes: int, trials: int, confidence: float = 0.95):
    """Exact binomial interval of ``successes / trials``."""
    alpha = 1 - confidence
    low = 0.0 if successes == 0 else beta.ppf(alpha / 2, successes, trials - successes + 1)
    high = 1.0 if successes == trials else beta.ppf(1 - alpha / 2, successes + 1, trials - successes)
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="exported model folder with digits/")
    parser.add_argument("--prep_folder", required=True, help="prepared split: its test.csv is used")
    parser.add_argument("--prompts", type=int, default=20, help="fresh prompts per recording")
    parser.add_argument("--digits", type=int, default=6, help="prompt length")
    parser.add_argument("--max_digit_errors", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recognizer = load_recognizer(args.model)
    if recognizer is None:
        parser.error(f"{args.model}: no digits/ folder (export with --digits_model)")
    rows = [r for r in read_manifest(f"{args.prep_folder}/test.csv") if r.wrd and "@" not in r.id]
    heard, seconds = [], []
    for row in rows:
        start = time.perf_counter()
        heard.append(recognizer.transcribe_file(row.wav))
        seconds.append(time.perf_counter() - start)
    passed = trials = 0
    for text in heard:
        for _ in range(args.prompts):
            prompt = "".join(secrets.choice("0123456789") for _ in range(args.digits))
            passed += digit_errors(prompt, text) <= args.max_digit_errors
            trials += 1
    low, high = clopper_pearson(passed, trials)
    refused = [float(digit_errors(r.wrd, h) > args.max_digit_errors) for r, h in zip(rows, heard)]
    genuine = digit_metrics([r.wrd for r in rows], heard, [r.spk_id for r in rows])
    print(f"{len(rows)} recordings of {len({r.spk_id for r in rows})} test speakers, {args.prompts} fresh "
          f"{args.digits}-digit prompts each, max_digit_errors {args.max_digit_errors}")
    print(f"replay attacks passing the digit check: {passed}/{trials} = {100 * passed / trials:.3f} % "
          f"[{100 * low:.3f}, {100 * high:.3f}] (Clopper-Pearson 95 %)")
    lo, hi = genuine["string_accuracy_ci"]
    print(f"genuine claims the digit check refuses: {100 * statistics.mean(refused):.2f} % "
          f"[{100 * (1 - hi):.2f}, {100 * (1 - lo):.2f}] (speaker bootstrap of exact matches; DER {100 * genuine['der']:.2f} %)")
    print(f"recogniser time per claim: median {1000 * statistics.median(seconds):.0f} ms "
          f"(utterances of {statistics.mean(r.duration for r in rows):.1f} s on average, {args.threads} thread)")


if __name__ == "__main__":
    main()
