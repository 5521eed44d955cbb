#!/usr/bin/env python3
"""Evaluate a speaker-embedding model on every trial list of a prepared folder.

Usage::

    python recipes/evaluate.py hparams/eval_demo.yaml --model_folder=SAVE \\
        --model_hparams=TRAIN_YAML --prep_folder=MANIFESTS [--overrides]

Conditions: ``trials.txt`` -> ``full``, ``trials_<d>s.txt`` -> ``<d>s``; each
also as ``<condition>+asnorm`` when a cohort is available. Writes to
``output_folder``: ``scores.txt`` (``full``) and ``scores_<condition>.txt``,
``results.json`` (``{condition: {eer, min_dcf_0.01, min_dcf_0.05,
num_trials, ...}}``), ``results.md``, ``threshold.json``, ``det.png`` and
``score_hist.png``. The threshold is chosen on the raw cosine scores of
``calibration_trials`` (what ``SpeakerRecognition.verify_files`` computes)
and its FAR/FRR reported on each raw condition. Bad input: one line on
stderr, exit status 1.
"""
import json
import logging
import re
import sys
from pathlib import Path
from typing import Dict, List

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.embeddings import embed_manifest, read_manifest, speaker_means
from speechbrain_ext.export import load_extractor
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.metrics import eer, error_rates, min_dcf, threshold_at_far
from speechbrain_ext.plots import plot_det, plot_score_hist
from speechbrain_ext.scoring import as_norm, cosine_scores, read_trials, write_scores

logger = logging.getLogger("evaluate")


def trial_lists(folder: Path) -> Dict[str, Path]:
    """``{condition: path}``: ``trials_<d>s.txt`` by duration, then ``trials.txt`` as ``full``."""
    if not (folder / "trials.txt").is_file():
        raise FileNotFoundError(f"{folder}/trials.txt: no such trial list")
    found = {}
    for path in folder.glob("trials_*.txt"):
        match = re.fullmatch(r"trials_(\d+(?:\.\d+)?)s\.txt", path.name)
        if match:
            found[float(match.group(1))] = (f"{match.group(1)}s", path)
    return {**{tag: path for _, (tag, path) in sorted(found.items())}, "full": folder / "trials.txt"}


def is_empty(path: Path) -> bool:
    """True if a trial file has no non-blank line."""
    return not any(line.strip() for line in path.open(encoding="utf-8"))


def condition_metrics(scores, labels) -> Dict[str, float]:
    """EER and normalised minDCF at p_target 0.01 and 0.05."""
    return {"eer": eer(scores, labels)[0], "min_dcf_0.01": min_dcf(scores, labels, 0.01)[0],
            "min_dcf_0.05": min_dcf(scores, labels, 0.05)[0], "num_trials": len(scores)}


def calibrate(scores, labels, hp: dict) -> Dict[str, object]:
    """The deployment threshold on development scores (``threshold_rule``: far or eer)."""
    if hp["threshold_rule"] == "far":
        threshold, rule = threshold_at_far(scores, labels, hp["target_far"]), f"FAR <= {hp['target_far']:g}"
    elif hp["threshold_rule"] == "eer":
        threshold, rule = eer(scores, labels)[1], "EER"
    else:
        raise ValueError(f"threshold_rule must be 'far' or 'eer', got {hp['threshold_rule']!r}")
    far, frr = error_rates(scores, labels, threshold)
    return {"threshold": threshold, "method": rule, "score": "cosine (no normalisation)",
            "calibration_trials": str(hp["calibration_trials"]), "dev_far": far, "dev_frr": frr}


def results_table(results: Dict[str, Dict], threshold: Dict) -> str:
    """Markdown table of every condition, with FAR/FRR at the calibrated threshold."""
    lines = ["| condition | trials | EER (%) | minDCF 0.01 | minDCF 0.05 | FAR@thr (%) | FRR@thr (%) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for cond, r in results.items():
        at = (f"{100 * r['far_at_threshold']:.2f} | {100 * r['frr_at_threshold']:.2f}"
              if "far_at_threshold" in r else "- | -")
        lines.append(f"| {cond} | {r['num_trials']} | {100 * r['eer']:.2f} | {r['min_dcf_0.01']:.4f} | "
                     f"{r['min_dcf_0.05']:.4f} | {at} |")
    lines += ["", f"Threshold {threshold['threshold']:.4f} ({threshold['method']} on "
                  f"{threshold['calibration_trials']}, raw cosine): dev FAR {100 * threshold['dev_far']:.2f}%, "
                  f"FRR {100 * threshold['dev_frr']:.2f}%."]
    return "\n".join(lines)


def load_cohort(hp: dict, extractor, cache: Path):
    """Cohort speaker means ``[C, D]`` and mean embedding ``[D]``, or ``(None, None)``."""
    path = hp.get("cohort_csv")
    if not path or not Path(path).is_file() or not read_manifest(path):
        if hp["subtract_mean"]:
            raise ValueError(f"subtract_mean needs a training manifest, cohort_csv={path} has no rows")
        logger.warning("no cohort manifest (%s): AS-norm conditions skipped", path)
        return None, None
    speakers, means, mean = speaker_means(path, extractor, hp["cohort_max_speakers"],
                                          hp["cohort_utts_per_speaker"], cache)
    if len(speakers) < 2:
        logger.warning("cohort has %d speaker(s): AS-norm conditions skipped", len(speakers))
        return None, mean
    return means, mean


def evaluate(hp: dict, run_opts: dict) -> Dict[str, Dict]:
    """Run the evaluation; returns ``results.json``'s content."""
    out = Path(hp["output_folder"])
    enroll_ids = {r.id for r in read_manifest(hp["enroll_csv"])}
    test_ids = {r.id for r in read_manifest(hp["test_csv"])}
    conditions = {}
    for cond, path in trial_lists(Path(hp["trials_folder"])).items():
        if cond != "full" and is_empty(path):
            logger.warning("%s is empty (no test utterance long enough): condition %s skipped", path, cond)
            continue
        conditions[cond] = read_trials(path, enroll_ids, test_ids)
    dev = read_trials(hp["calibration_trials"], enroll_ids, test_ids)

    extractor = load_extractor(hp["model_hparams"], hp["model_folder"], hp["batch_size"],
                               run_opts.get("device") or "cpu", hp["model_overrides"])
    cache = Path(hp["cache_folder"])
    enroll = embed_manifest(hp["enroll_csv"], extractor, hp["enroll_mode"], cache)
    test = embed_manifest(hp["test_csv"], extractor, "concat", cache)
    cohort, mean = load_cohort(hp, extractor, cache)
    mean = mean if hp["subtract_mean"] else None

    try:
        threshold = calibrate(cosine_scores(dev, enroll, test), [t[2] for t in dev], hp)
    except ValueError as err:
        raise ValueError(f"calibration trials {hp['calibration_trials']}: {err}") from None
    results: Dict[str, Dict] = {}
    curves = {}
    for cond, trials in conditions.items():
        labels = [t[2] for t in trials]
        raw = cosine_scores(trials, enroll, test)
        scored = {cond: raw if mean is None else cosine_scores(trials, enroll, test, mean=mean)}
        if cohort is not None:
            scored[f"{cond}+asnorm"] = as_norm(scored[cond], trials, enroll, test, cohort,
                                              hp["asnorm_top_n"], mean=mean)
        for name, scores in scored.items():
            try:
                results[name] = condition_metrics(scores, labels)
            except ValueError as err:
                raise ValueError(f"condition {name}: {err}") from None
            write_scores(out / ("scores.txt" if name == "full" else f"scores_{name}.txt"), trials, scores)
            curves[name] = (scores, labels)
        far, frr = error_rates(raw, labels, threshold["threshold"])
        results[cond].update(threshold=threshold["threshold"], far_at_threshold=far, frr_at_threshold=frr)

    with atomic_write(out / "threshold.json") as f:
        json.dump(threshold, f, indent=2)
    with atomic_write(out / "results.json") as f:
        json.dump(results, f, indent=2)
    table = results_table(results, threshold)
    with atomic_write(out / "results.md") as f:
        f.write(f"# Evaluation of {hp['model_folder']}\n\n{table}\n")
    plot_det(curves, out / "det.png")
    plot_score_hist(*curves["full"], out / "score_hist.png", threshold=threshold["threshold"])
    print(table)
    return results


def main(argv: List[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    try:
        with open(hparams_file, encoding="utf-8") as fin:
            hp = load_hyperpyyaml(fin, overrides)
        Path(hp["output_folder"]).mkdir(parents=True, exist_ok=True)
        evaluate(hp, run_opts)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"results in {hp['output_folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
