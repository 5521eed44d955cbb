#!/usr/bin/env python3
"""Evaluate a speaker-embedding model on every trial list of a prepared folder (README, "Evaluation").

Usage::

    python recipes/evaluate.py hparams/eval_demo.yaml --model_folder=MODEL --prep_folder=MANIFESTS

``MODEL``: a training save folder, an exported model folder or SpeechBrain's published one, each giving the
architecture by its ``hyperparams.yaml`` (``--model_hparams`` only for a checkpoint without one). Conditions:
``trials.txt`` -> ``full``, ``trials_<d>s.txt`` -> ``<d>s``, each also as ``<condition>+asnorm`` with a
cohort. Writes ``scores*.txt``, ``results.json`` (EER, minDCF, actDCF, Cllr, minCllr, each with its 95 %
speaker-level bootstrap CI), ``results.md``, ``threshold.json``, ``det.png`` (deployed operating point marked)
and ``score_hist.png``. The decision is calibrated on the dev split (``calibration_folder``: speakers disjoint
from training and test; else, with a warning, the test list) by ``speechbrain_ext.calibration`` (llr map and
target-FAR threshold) for one score (``deploy_score``); its FAR/FRR are measured on each test condition of that
score; with AS-norm, ``cohort.pt`` goes beside ``threshold.json`` for ``recipes/export.py`` to ship. Dev
trials that cannot calibrate (one class, too few targets): one warning line and no ``threshold.json``. Bad
input: one line on stderr, exit status 1. With a digit recogniser (the model folder's ``digits/`` or
``--digits_model``), ``results.json["digits"]`` holds its digit error rate and string accuracy by condition
(``speechbrain_ext.digit_evaluation``).
"""
import logging
import re
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.builder import compose
from speechbrain_ext.calibration import (CalibrationError, DevTrials, calibration_material, deploy, load_cohort,
                                         save_cohort, warn_if_few, write_threshold)
from speechbrain_ext.embeddings import embed_manifest
from speechbrain_ext.digit_evaluation import digits_table, evaluate_digits
from speechbrain_ext.io_utils import atomic_write, write_json
from speechbrain_ext.manifest import read_manifest, read_trials, write_scores
from speechbrain_ext.metrics import bootstrap_ci, interval_text, system_metrics
from speechbrain_ext.model_folder import COHORT_FILE, THRESHOLD_FILE, load_extractor
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


def condition_metrics(scores, labels, speakers, hp: dict, llrs=None, decisions=None) -> Dict[str, object]:
    """EER and normalised minDCF at p_target 0.01 and 0.05; with ``llrs`` actDCF at both, Cllr and minCllr; with
    ``decisions`` their FAR/FRR; each with its speaker-bootstrap CI."""
    result = {**system_metrics(scores, labels, llrs, decisions), "num_trials": len(scores),
              "num_test_speakers": len(set(speakers))}
    if hp["bootstrap_resamples"] and len(set(speakers)) >= 2:
        cis = bootstrap_ci(scores, labels, speakers, num_resamples=hp["bootstrap_resamples"], seed=hp["seed"],
                           llrs=llrs, decisions=decisions)
        result.update({f"{name}_ci": list(ci) for name, ci in cis.items()})
    return result


def results_table(results: Dict[str, Dict], threshold: Optional[Dict]) -> str:
    """Markdown table of every condition (95 % CIs), with FAR/FRR at the target-FAR threshold and of the
    deployed decision."""
    target = f"target {100 * threshold['target_far']:g}" if threshold else "no threshold"
    lines = ["| condition | trials | EER (%) [95% CI] | minDCF 0.01 [95% CI] | actDCF 0.01 [95% CI] | minDCF 0.05 | "
             "actDCF 0.05 | Cllr [95% CI] | minCllr | "
             f"FAR@thr (%) ({target}) [95% CI] | FRR@thr (%) | deployed FAR (%) | deployed FRR (%) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def cell(r, name, scale=1.0, digits=3, ci=True):
        return interval_text(r[name], r.get(f"{name}_ci") if ci else None, scale, digits) if name in r else "-"

    for cond, r in results.items():
        lines.append(" | ".join([f"| {cond}", str(r["num_trials"]), cell(r, "eer", 100, 2), cell(r, "min_dcf_0.01"),
                                 cell(r, "act_dcf_0.01"), cell(r, "min_dcf_0.05", ci=False),
                                 cell(r, "act_dcf_0.05", ci=False), cell(r, "cllr"), cell(r, "min_cllr", ci=False),
                                 cell(r, "far_at_threshold", 100, 2), cell(r, "frr_at_threshold", 100, 2, False),
                                 cell(r, "far_deployed", 100, 2), cell(r, "frr_deployed", 100, 2, False)]) + " |")
    if threshold is None:
        return "\n".join(lines + ["", "No threshold: the calibration trials cannot give one (see the warning)."])
    measured = (f"measured test FAR {interval_text(threshold['test_far'], threshold.get('test_far_ci'), 100)}% "
                f"(FRR {100 * threshold['test_frr']:.2f}%)" if "test_far" in threshold
                else "no full test list to measure it on")
    cal = threshold["calibration"]
    decision = (f"llr >= {cal['llr_threshold']:.3f} (p_target {cal['p_target']:g}, c_miss {cal['c_miss']:g}, "
                f"c_fa {cal['c_fa']:g})" if cal["mode"] == "llr" else f"{threshold['score']} >= {threshold['threshold']:.4f}")
    lines += ["", f"Threshold {threshold['threshold']:.4f} on {threshold['score']} scores ({threshold['method']} on "
                  f"{threshold['calibration_trials']}, {threshold['num_calibration_trials']} trials): "
                  f"target FAR {100 * threshold['target_far']:g}%, {measured}; "
                  f"dev FAR {100 * threshold['dev_far']:.2f}%, FRR {100 * threshold['dev_frr']:.2f}%.",
              f"Deployed decision ({cal['mode']} mode): {decision}; llr = {cal['map']['a']:.3f} s + "
              f"{cal['map']['b']:.3f} + {cal['map']['c']:.3f} q (q: {cal['map']['quality']})."]
    return "\n".join(lines)


def dev_trials(lists: Dict[str, Path], enroll_csv: Path, test_csv: Path) -> Tuple[Dict[str, list], Dict[str, float]]:
    """The dev trial lists ``{condition: trials}`` and the dev test durations ``{id: seconds}``."""
    tests = {r.id: r.duration for r in read_manifest(test_csv)}
    enroll_ids = {r.id for r in read_manifest(enroll_csv)}
    used = {cond: path for cond, path in lists.items()
            if cond == "full" or any(map(str.strip, path.open(encoding="utf-8")))}
    return {cond: read_trials(path, enroll_ids, set(tests)) for cond, path in used.items()}, tests


def evaluate(hp: dict, run_opts: dict) -> Dict[str, Dict]:
    """Run the evaluation; returns ``results.json``'s content."""
    out = Path(hp["output_folder"])
    test_rows = read_manifest(hp["test_csv"])
    speaker_of, duration_of = {r.id: r.spk_id for r in test_rows}, {r.id: r.duration for r in test_rows}
    enroll_ids = {r.id for r in read_manifest(hp["enroll_csv"])}
    conditions = {}
    for cond, path in trial_lists(Path(hp["trials_folder"])).items():
        if cond != "full" and not any(map(str.strip, path.open(encoding="utf-8"))):
            logger.warning("%s is empty (no test utterance long enough): condition %s skipped", path, cond)
            continue
        conditions[cond] = read_trials(path, enroll_ids, set(speaker_of))
    cal_folder, cal_enroll, cal_test, cal_lists = calibration_material(hp)
    dev, dev_durations = dev_trials(cal_lists, cal_enroll, cal_test)
    dev_speakers = {r.id: r.spk_id for r in read_manifest(cal_test)}
    warn_if_few(cal_lists["full"], [t[2] for t in dev["full"]], len({dev_speakers[t[1]] for t in dev["full"]}))

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
    material = {}
    for kind, scoring in candidates.items():
        pooled = [t for trials in dev.values() for t in trials]
        pooled_scores = scoring(pooled, dev_enroll, dev_test, mean)
        full = len(dev["full"])  # the full list comes first in the pool
        material[kind] = DevTrials(pooled_scores[:full], np.array([t[2] for t in dev["full"]]), pooled_scores,
                                   np.array([t[2] for t in pooled]), np.array([dev_durations[t[1]] for t in pooled]))
    try:
        kind, calibrations, threshold = deploy(material, hp, extractor.fingerprint())
        threshold["calibration_trials"] = f"{cal_folder.name}/trials.txt"
    except CalibrationError as err:
        logger.warning("calibration trials %s: %s: no threshold.json written", cal_lists["full"], err)
        kind, calibrations, threshold = None, {}, None
    except ValueError as err:
        raise ValueError(f"calibration trials {cal_lists['full']}: {err}") from None
    results: Dict[str, Dict] = {}
    curves, operating_points = {}, {}
    for cond, trials in conditions.items():
        labels = [t[2] for t in trials]
        if len(set(labels)) < 2:
            logger.warning("condition %s skipped: its %d trial(s) are all %s", cond, len(labels),
                           "target" if labels and labels[0] else "non-target")
            continue
        speakers = [speaker_of[t[1]] for t in trials]
        durations = [duration_of[t[1]] for t in trials]
        for score_kind, scoring in candidates.items():
            name, scores = cond if score_kind == "cosine" else f"{cond}+{score_kind}", scoring(trials, enroll, test, mean)
            calibration = calibrations.get(score_kind)
            llrs = None if calibration is None else calibration.llr(scores, durations)
            decisions = None
            if score_kind == kind:
                decisions = {"at_threshold": scores >= calibration.threshold,
                             "deployed": calibration.accept(scores, durations)}
            results[name] = condition_metrics(scores, labels, speakers, hp, llrs, decisions)
            write_scores(out / ("scores.txt" if name == "full" else f"scores_{name}.txt"), trials, scores)
            curves[name] = (scores, labels)
            if decisions is not None:
                r = results[name]
                r["threshold"] = calibration.threshold
                operating_points[name] = (r["far_deployed"], r["frr_deployed"])
                if cond == "full":
                    threshold.update(test_far=r["far_at_threshold"], test_frr=r["frr_at_threshold"],
                                     test_far_deployed=r["far_deployed"], test_frr_deployed=r["frr_deployed"])
                    if "far_at_threshold_ci" in r:
                        threshold["test_far_ci"] = r["far_at_threshold_ci"]
    if not results:
        raise ValueError(f"{hp['trials_folder']}: no condition has trials of both classes")
    for stale in (THRESHOLD_FILE, COHORT_FILE):  # of an earlier run into this folder
        (out / stale).unlink(missing_ok=True)
    if threshold is not None and threshold["score"] == "asnorm":
        save_cohort(out / COHORT_FILE, cohort, hp["asnorm_top_n"], extractor.fingerprint())
        threshold["cohort_file"] = COHORT_FILE

    table = results_table(results, threshold)
    digits = evaluate_digits(hp["model_folder"], hp.get("digits_model"), hp["test_csv"], out,
                             hp["bootstrap_resamples"], hp["seed"])
    if digits:
        results["digits"] = digits
        table += ("\n\nDigit recogniser (references of crops: CTC-aligned digits of the full file):\n\n"
                  + digits_table(digits))
    if threshold is not None:
        write_threshold(out / THRESHOLD_FILE, threshold)
    write_json(out / "results.json", results)
    with atomic_write(out / "results.md") as f:
        f.write(f"# Evaluation of {hp['model_folder']}\n\n{table}\n")
    plot_det(curves, out / "det.png", operating_points)
    if "full" in curves:
        plot_score_hist(*curves["full"], out / "score_hist.png",
                        threshold=threshold["threshold"] if threshold and kind == "cosine" else None)
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
