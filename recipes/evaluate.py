#!/usr/bin/env python3
"""Evaluate a speaker-embedding model on every trial list of a prepared folder (README, "Evaluation").

Usage::

    python recipes/evaluate.py hparams/eval_demo.yaml --model_folder=MODEL --prep_folder=MANIFESTS

``MODEL``: a training save folder, an exported model folder or SpeechBrain's published one, each giving the
architecture by its ``hyperparams.yaml`` (``--model_hparams`` only for a checkpoint without one). Conditions:
``trials.txt`` -> ``full``, ``trials_<d>s.txt`` -> ``<d>s``, each also as ``<condition>+asnorm`` with a
cohort. Writes ``scores*.txt``, ``results.json`` (each EER/minDCF with its 95 % speaker-level bootstrap CI),
``results.md``, ``threshold.json``, ``det.png`` and ``score_hist.png``. The threshold is calibrated on the dev
split (``calibration_folder``: speakers disjoint from training and test; else, with a warning, the test list)
for one score (``deploy_score``) and its FAR/FRR measured on each test condition of that score; with AS-norm,
``cohort.pt`` goes beside ``threshold.json`` for ``recipes/export.py`` to ship. With a digit recogniser (the
model folder's ``digits/`` or ``--digits_model``), ``results.json["digits"]`` holds its digit error rate and
string accuracy by condition (``speechbrain_ext.digit_evaluation``). Bad input: one line on stderr, exit status 1.
"""
import logging
import re
import sys
from pathlib import Path
from typing import Dict, List

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.builder import compose, load_extractor
from speechbrain_ext.calibration import COHORT_FILE, save_cohort
from speechbrain_ext.digit_evaluation import digits_table, evaluate_digits
from speechbrain_ext.embeddings import embed_manifest, speaker_means
from speechbrain_ext.io_utils import atomic_write, write_json
from speechbrain_ext.manifest import read_manifest, read_trials, write_scores
from speechbrain_ext.metrics import bootstrap_ci, eer, error_rates, interval_text, min_dcf, threshold_at_far
from speechbrain_ext.plots import plot_det, plot_score_hist
from speechbrain_ext.scoring import Scoring

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


def condition_metrics(scores, labels, speakers, hp: dict) -> Dict[str, object]:
    """EER and normalised minDCF at p_target 0.01 and 0.05, each with its bootstrap CI."""
    result = {"eer": eer(scores, labels)[0], "min_dcf_0.01": min_dcf(scores, labels, 0.01)[0],
              "min_dcf_0.05": min_dcf(scores, labels, 0.05)[0], "num_trials": len(scores),
              "num_test_speakers": len(set(speakers))}
    if hp["bootstrap_resamples"] and len(set(speakers)) >= 2:
        cis = bootstrap_ci(scores, labels, speakers, num_resamples=hp["bootstrap_resamples"], seed=hp["seed"])
        result.update({f"{name}_ci": list(ci) for name, ci in cis.items()})
    return result


def calibrate(scores, labels, hp: dict) -> Dict[str, object]:
    """The deployment threshold on development scores (``threshold_rule``: far or eer)."""
    if hp["threshold_rule"] == "far":
        threshold, rule = threshold_at_far(scores, labels, hp["target_far"]), f"FAR <= {hp['target_far']:g}"
    elif hp["threshold_rule"] == "eer":
        threshold, rule = eer(scores, labels)[1], "EER"
    else:
        raise ValueError(f"threshold_rule must be 'far' or 'eer', got {hp['threshold_rule']!r}")
    far, frr = error_rates(scores, labels, threshold)
    return {"threshold": threshold, "method": rule, "target_far": hp["target_far"],
            "dev_far": far, "dev_frr": frr, "num_calibration_trials": len(labels)}


def deploy(dev, dev_enroll, dev_test, candidates: Dict[str, Scoring], mean, hp: dict) -> Dict[str, object]:
    """The deployed score and its threshold, calibrated on the dev trials.

    ``deploy_score`` ``auto`` takes the score with the lower dev FRR at its
    own threshold (the operating point deployed; cosine on ties, it needs no
    cohort); ``cosine``/``asnorm`` force one.
    """
    wanted = hp["deploy_score"]
    if wanted not in ("auto", *candidates):
        raise ValueError(f"deploy_score must be auto, cosine or asnorm (asnorm needs a cohort: cohort_csv="
                         f"{hp.get('cohort_csv')}), got {wanted!r}")
    labels = [t[2] for t in dev]
    calibrated = {kind: calibrate(scoring(dev, dev_enroll, dev_test, mean), labels, hp)
                  for kind, scoring in candidates.items() if wanted in ("auto", kind)}
    kind = min(calibrated, key=lambda k: (calibrated[k]["dev_frr"], k != "cosine"))
    return {**calibrated[kind], "score": kind, "enroll_mode": hp["enroll_mode"],
            "subtract_mean": hp["subtract_mean"]}


def results_table(results: Dict[str, Dict], threshold: Dict) -> str:
    """Markdown table of every condition (95 % CIs), with FAR/FRR at the calibrated threshold."""
    lines = ["| condition | trials | EER (%) [95% CI] | minDCF 0.01 [95% CI] | minDCF 0.05 | "
             f"FAR@thr (%) (target {100 * threshold['target_far']:g}) | FRR@thr (%) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for cond, r in results.items():
        at = (f"{100 * r['far_at_threshold']:.2f} | {100 * r['frr_at_threshold']:.2f}"
              if "far_at_threshold" in r else "- | -")
        lines.append(f"| {cond} | {r['num_trials']} | {interval_text(r['eer'], r.get('eer_ci'), 100)} | "
                     f"{interval_text(r['min_dcf_0.01'], r.get('min_dcf_0.01_ci'), 1, 3)} | {r['min_dcf_0.05']:.3f} | {at} |")
    measured = (f"measured test FAR {100 * threshold['test_far']:.2f}% (FRR {100 * threshold['test_frr']:.2f}%)"
                if "test_far" in threshold else "no full test list to measure it on")
    lines += ["", f"Threshold {threshold['threshold']:.4f} on {threshold['score']} scores ({threshold['method']} on "
                  f"{threshold['calibration_trials']}, {threshold['num_calibration_trials']} trials): "
                  f"target FAR {100 * threshold['target_far']:g}%, {measured}; "
                  f"dev FAR {100 * threshold['dev_far']:.2f}%, FRR {100 * threshold['dev_frr']:.2f}%."]
    return "\n".join(lines)


def calibration_material(hp: dict):
    """``(folder, enroll_csv, test_csv, trials)`` to calibrate on: the dev split, else the
    evaluated list (with a warning, as its FAR is then not a measurement)."""
    folder = Path(hp["calibration_folder"]) if hp.get("calibration_folder") else None
    evaluated = Path(hp["eval_folder"])
    if folder is None or not (folder / "trials.txt").is_file():
        logger.warning("no dev split (%s/trials.txt): calibrating on the evaluated trials %s, so the FAR "
                       "at the threshold is not a measurement", folder, evaluated / "trials.txt")
        folder = evaluated
    elif folder.resolve() == evaluated.resolve():
        logger.warning("calibration_folder is the evaluated folder %s: the FAR at the threshold is not "
                       "a measurement", folder)
    return folder, folder / "enroll.csv", folder / "test.csv", folder / "trials.txt"


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
    speaker_of = {r.id: r.spk_id for r in read_manifest(hp["test_csv"])}
    enroll_ids = {r.id for r in read_manifest(hp["enroll_csv"])}
    conditions = {}
    for cond, path in trial_lists(Path(hp["trials_folder"])).items():
        if cond != "full" and not any(map(str.strip, path.open(encoding="utf-8"))):
            logger.warning("%s is empty (no test utterance long enough): condition %s skipped", path, cond)
            continue
        conditions[cond] = read_trials(path, enroll_ids, set(speaker_of))
    cal_folder, cal_enroll, cal_test, cal_trials = calibration_material(hp)
    dev = read_trials(cal_trials, {r.id for r in read_manifest(cal_enroll)},
                      {r.id for r in read_manifest(cal_test)})

    extractor = load_extractor(hp["model_hparams"], hp["model_folder"], hp["batch_size"],
                               run_opts.get("device") or "cpu", hp["model_overrides"])
    cache = Path(hp["cache_folder"])
    enroll = embed_manifest(hp["enroll_csv"], extractor, hp["enroll_mode"], cache)
    test = embed_manifest(hp["test_csv"], extractor, "concat", cache)
    cohort, mean = load_cohort(hp, extractor, cache)
    mean = mean if hp["subtract_mean"] else None

    same = cal_folder.resolve() == Path(hp["eval_folder"]).resolve()
    dev_enroll = enroll if same else embed_manifest(cal_enroll, extractor, hp["enroll_mode"], cache)
    dev_test = test if same else embed_manifest(cal_test, extractor, "concat", cache)
    candidates = {"cosine": Scoring()}
    if cohort is not None:
        candidates["asnorm"] = Scoring("asnorm", cohort, hp["asnorm_top_n"])
    try:
        threshold = deploy(dev, dev_enroll, dev_test, candidates, mean, hp)
    except ValueError as err:
        raise ValueError(f"calibration trials {cal_trials}: {err}") from None
    threshold["calibration_trials"] = f"{cal_folder.name}/trials.txt"
    results: Dict[str, Dict] = {}
    curves = {}
    for cond, trials in conditions.items():
        labels = [t[2] for t in trials]
        if len(set(labels)) < 2:
            logger.warning("condition %s skipped: its %d trial(s) are all %s", cond, len(labels),
                           "target" if labels and labels[0] else "non-target")
            continue
        speakers = [speaker_of[t[1]] for t in trials]
        for kind, scoring in candidates.items():
            name, scores = cond if kind == "cosine" else f"{cond}+{kind}", scoring(trials, enroll, test, mean)
            results[name] = condition_metrics(scores, labels, speakers, hp)
            write_scores(out / ("scores.txt" if name == "full" else f"scores_{name}.txt"), trials, scores)
            curves[name] = (scores, labels)
            if kind == threshold["score"]:
                far, frr = error_rates(scores, labels, threshold["threshold"])
                results[name].update(threshold=threshold["threshold"], far_at_threshold=far, frr_at_threshold=frr)
                if cond == "full":
                    threshold.update(test_far=far, test_frr=frr)
    if not results:
        raise ValueError(f"{hp['trials_folder']}: no condition has trials of both classes")
    if threshold["score"] == "asnorm":
        save_cohort(out / COHORT_FILE, cohort, hp["asnorm_top_n"], extractor.fingerprint())
        threshold["cohort_file"] = COHORT_FILE

    table = results_table(results, threshold)
    digits = evaluate_digits(hp["model_folder"], hp.get("digits_model"), hp["test_csv"], out,
                             hp["bootstrap_resamples"], hp["seed"])
    if digits:
        results["digits"] = digits
        table += ("\n\nDigit recogniser (references of crops: CTC-aligned digits of the full file):\n\n"
                  + digits_table(digits))
    write_json(out / "threshold.json", threshold)
    write_json(out / "results.json", results)
    with atomic_write(out / "results.md") as f:
        f.write(f"# Evaluation of {hp['model_folder']}\n\n{table}\n")
    plot_det(curves, out / "det.png")
    if "full" in curves:
        plot_score_hist(*curves["full"], out / "score_hist.png", threshold=threshold["threshold"])
    print(table)
    return results


def main(argv: List[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    try:
        hp = load_hyperpyyaml(compose(hparams_file, overrides))
        Path(hp["output_folder"]).mkdir(parents=True, exist_ok=True)
        evaluate(hp, run_opts)
    except (ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"results in {hp['output_folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
