#!/usr/bin/env python3
"""Ablation of the transfer losses, with dev/test splits, CIs and paired differences.

For every seed S (``--first_seed`` + 0, 1, ...), through ``speechbrain_ext.pipeline``:

1. pre-train on the source corpus with ``hparams/pretrain_demo.yaml`` (one run per seed, or one shared
   by all seeds with ``--share_pretrain``, which the table then says);
2. split the target corpus with ``hparams/transfer_demo.yaml``'s own ``prepare_data``: disjoint training,
   test and dev speakers (``--test_ratio``/``--dev_ratio``, 0.4/0.15: 60/22 of 150 speakers), 1/2/3 s crops,
   every enrolment x test pair a trial. Every variant of a seed uses this one split;
3. transfer once per variant (``VARIANTS``: the yaml's defaults plus that variant's switches)::

       baseline_aam    plain AAM fine-tune: K=1, no short crop, no long-short term, 2 s crops of one string
       subcenter       + K sub-centers (dropped to the dominant one as the yaml says)
       longshort_kl    + short-crop CE and the long-short term, K=1
       joint           the yaml's defaults (the dev-chosen joint configuration)
       joint_rows, baseline_aam_rows
                       the same, trained on prep-joined rows (the data rule before issue 22)
       joint_keep_k    joint with the K sub-centers kept to the end
       joint_first     the first formulation: live-network posterior KL, one short scale
       stock_finetune  a plain SpeechBrain-recipe fine-tune

4. evaluate the pre-trained model (``no_transfer``) and each transferred one on the test and the dev
   speakers with ``hparams/eval_demo.yaml`` (1s, 2s, 3s, full; each also +asnorm), from the checkpoint with
   the lowest speaker-ID validation error (its epoch: ``evaluated_epoch``).

Choices are made on dev; test is reported, not used to choose. Every figure is the mean over seeds with its
95 % interval (test speakers resampled with all their trials, the mean over seeds taken resample by
resample); ``Δ`` is the paired difference from ``baseline_aam`` on the same trials and resamples
(``speechbrain_ext.comparison``). Stages are resumable (a run's ``run.json``, an evaluation's
``results.json``), log to ``<run folder>/ablation.log``, and a re-done training run invalidates its
evaluations. ``step_time_s``: seconds per optimiser step as the Brain logs it in ``train_log.txt``, mean over
epochs and seeds; wall time on a shared machine, so compare variants of one invocation only.

Output ``--output_json`` (EER a fraction; seeds, commands and budget in ``<stem>.meta.json``)::

    {"<variant>": {"<condition>": {"eer": [per seed], "min_dcf_0.01": [per seed],
                                   "eer_mean": m, "eer_ci": [lo, hi], ...,
                                   "diff_vs_baseline": {"eer": d, "eer_ci": [lo, hi], ...}},
                   "step_time_s": float or null, "evaluated_epoch": [per seed],
                   "dev": {"<condition>": {... the same on the dev speakers}}}}

Usage::

    python benchmarks/ablation.py --source_folder SRC --target_folder TGT --seeds 3 \\
        --output_json ablation.json [--work_folder DIR] [--pretrain_epochs 4] \\
        [--transfer_epochs E] [--jobs 1] [--threads N] [--variants joint ...] [--tag T] \\
        [--extra --teacher=ema]

``--extra`` must come last: everything after it is passed to every transfer
run (``key=value`` is read as ``--key=value``); ``--pretrain_extra`` takes one
quoted string of overrides for the pre-training runs.
"""
import argparse
import json
import os
import shlex
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

from data_prep.common import PrepError
from speechbrain_ext.model_folder import best_checkpoint_epoch
from speechbrain_ext.io_utils import write_json
from speechbrain_ext.manifest import speaker_count
from speechbrain_ext.metrics import interval_text
from speechbrain_ext.pipeline import (PY, RUN_MARKER, Stage, StageError, evaluate_command, prepare, run_stages,
                                      say, step_time, train_command)

PRETRAIN_YAML = "hparams/pretrain_demo.yaml"
TRANSFER_YAML = "hparams/transfer_demo.yaml"
EVAL_YAML = "hparams/eval_demo.yaml"

NO_TRANSFER = "no_transfer"
BASELINE = "baseline_aam"
PLAIN_AAM = ["--num_subcenters=1", "--topk=0", "--kl_final_weight=0", "--short_loss_weight=0"]
VARIANTS: Dict[str, List[str]] = {  # the ablation switches of hparams/transfer_shal.yaml
    # plain AAM has no short branch, so it trains on the test-like crop: 2 s of one string (chosen on dev over
    # 3 s string_joined and 3 s rows, benchmarks/transfer_sampling_dev.json)
    BASELINE: [*PLAIN_AAM, "--train_example=string", "--long_len=2.0"],
    "subcenter": ["--kl_final_weight=0", "--short_loss_weight=0"],
    "longshort_kl": ["--num_subcenters=1", "--topk=0"],
    "joint": [],
    # the data rule before issue 22: one example per prep-joined row (a speaker's strings joined up to long_len)
    "joint_rows": ["--train_example=row"],
    "baseline_aam_rows": [*PLAIN_AAM, "--train_example=row"],
    "joint_keep_k": ["--subcenter_drop_epoch=null"],
    "joint_first": ["--teacher=self", "--posterior_weight=1", "--cosine_weight=0",
                    "--subcenter_drop_epoch=null", "--short_scales=[1.0]"],
    # a plain SpeechBrain-recipe fine-tune: each string its own example, 2 s random crops zero-padded by the
    # batch, no augmentation, no warm-ups, no sub-centers, AAM m 0.2 s 30, Adam at a constant 3e-4, batch 32,
    # the checkpoint of lowest validation error
    "stock_finetune": ["--wav_augment=null", "--feat_augment=null", "--lr=0.0003", "--final_lr=0.0003",
                       "--lr_warmup_epochs=0", "--head_only_epochs=0", "--margin_ramp_start=0",
                       "--margin_ramp_end=0", "--margin=0.2", "--scale=30", "--num_subcenters=1",
                       "--topk=0", "--kl_final_weight=0", "--short_loss_weight=0", "--long_len=2.0",
                       "--batch_size=32", "--train_example=string", "--pad_mode=zero", "--select_checkpoint=valid"],
}
CONDITION_ORDER = ["1s", "2s", "3s", "full"]
SPLITS = ("test", "dev")  # dev: choices; test: reported only


def ordered_conditions(conditions) -> List[str]:
    """1s, 2s, 3s, full, then their +asnorm versions (those present in every seed's results)."""
    base = [c for c in CONDITION_ORDER if c in conditions]
    return base + [f"{c}+asnorm" for c in base if f"{c}+asnorm" in conditions]


def compare(evals: Dict[tuple, "Stage"], split: str, seeds: List[int], variants: List[str],
            prep: Dict[int, Path], num_resamples: int) -> Dict[str, Dict[str, dict]]:
    """``{variant: {condition: summary}}`` on one split: means over seeds, CIs, paired difference from the baseline."""
    from speechbrain_ext.comparison import seed_result, summarise

    conditions = None
    for key, stage in evals.items():
        if key[2] == split:
            found = set(json.loads(stage.done.read_text()))
            conditions = found if conditions is None else conditions & found
    test_csv = {s: (prep[s] if split == "test" else prep[s] / split) / "test.csv" for s in seeds}
    table: Dict[str, Dict[str, dict]] = {v: {} for v in variants}
    for cond in ordered_conditions(conditions or ()):
        results = {v: [seed_result(evals[(v, s, split)].done.parent, cond, test_csv[s], s, num_resamples)
                       for s in seeds] for v in variants}
        for v in variants:
            reference = results.get(BASELINE) if v != BASELINE else None
            table[v][cond] = summarise(results[v], reference)
    return table


def cell(summary: dict, metric: str, scale: float, digits: int, diff: bool = False) -> str:
    """``mean [low, high]`` of a metric over seeds, or of its paired difference from the baseline."""
    if diff:
        source = summary["diff_vs_baseline"]
        return interval_text(source[metric], source[f"{metric}_ci"], scale, digits, signed=True)
    return interval_text(summary[f"{metric}_mean"], summary[f"{metric}_ci"], scale, digits)


def print_report(summary: Dict[str, dict], seeds: List[int], prep: Dict[int, Path], splits: List[str]) -> None:
    """EER % and minDCF@0.01 per split: mean over seeds and the paired Δ from the baseline, with 95 % CIs."""
    print(f"\n=== ablation: mean over seeds {seeds} [95 % speaker-bootstrap CI]; "
          f"Δ = paired difference from {BASELINE}; choices are made on dev, test is reported")
    for split in [split for split in ("dev", "test") if split in splits]:
        tables = {v: (r.get("dev", {}) if split == "dev" else r) for v, r in summary.items()}
        conditions = [c for c in ordered_conditions(next(iter(tables.values()))) if "+" not in c]
        if not conditions:
            print(f"\n[{split}: no condition was evaluated for every variant and seed]")
            continue
        for title, metric, scale, digits in (("EER %", "eer", 100, 2), ("minDCF 0.01", "min_dcf_0.01", 1, 3)):
            print(f"\n[{split}: {title}, raw cosine]")
            print(f"{'variant':<15}" + "".join(f"{c:>24}" for c in conditions))
            for variant, conds in tables.items():
                print(f"{variant:<15}" + "".join(f"{cell(conds[c], metric, scale, digits):>24}" for c in conditions))
                if "diff_vs_baseline" in conds.get(conditions[0], {}):
                    print(f"{'  Δ':<15}" + "".join(f"{cell(conds[c], metric, scale, digits, True):>24}"
                                                   for c in conditions))
    step = {v: r["step_time_s"] for v, r in summary.items() if r.get("step_time_s")}
    if step:
        print("\nseconds per transfer step: " + ", ".join(f"{v} {t:.2f}" for v, t in step.items()))
    speakers = min(speaker_count(prep[s] / "enroll.csv") for s in seeds)
    if speakers < 30:
        print(f"\nnote: only {speakers} test speakers per seed: the confidence intervals are wide; a "
              "target corpus of >= 150 speakers gives the 60 test speakers this benchmark is sized for")


# ---------------------------------------------------------------- main
def parse_args(argv: List[str]) -> argparse.Namespace:
    extra: List[str] = []
    if "--extra" in argv:
        cut = argv.index("--extra")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="--extra OVERRIDES... (last): passed to every transfer run")
    parser.add_argument("--source_folder", required=True, help="pre-training corpus, <root>/<speaker>/<utt>.wav")
    parser.add_argument("--target_folder", required=True, help="transfer/test corpus, same layout")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds")
    parser.add_argument("--first_seed", type=int, default=1986, help="seeds are first_seed, first_seed+1, ...")
    parser.add_argument("--output_json", required=True)
    parser.add_argument("--work_folder", default="results/ablation", help="runs go to <work_folder>/seed<S>/")
    parser.add_argument("--pretrain_epochs", type=int, default=4)
    parser.add_argument("--transfer_epochs", type=int, help="default: the transfer yaml's number_of_epochs")
    parser.add_argument("--test_ratio", type=float, default=0.4, help="fraction of target speakers for test")
    parser.add_argument("--dev_ratio", type=float, default=0.15, help="fraction of target speakers for dev")
    parser.add_argument("--splits", nargs="+", default=list(SPLITS), choices=SPLITS,
                        help="splits to evaluate: dev alone while choosing, so that test is read once, at the end")
    parser.add_argument("--no_asnorm", action="store_true", help="raw cosine only (no cohort: about a third faster)")
    parser.add_argument("--bootstrap_resamples", type=int, default=1000, help="speaker-level bootstrap resamples")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="transfer variants (no_transfer is always evaluated)")
    parser.add_argument("--tag", default="", help="suffix of the transfer run folders (for --extra studies)")
    parser.add_argument("--share_pretrain", action="store_true", help="one pre-training (first seed) for all seeds")
    parser.add_argument("--pretrain_extra", default="", help="quoted overrides for the pre-training runs")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=0,
                        help="CPU threads per run (OMP_NUM_THREADS); default: torch's own with --jobs 1, "
                             "else cores // jobs. 1 is fastest on a busy machine")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    args.extra = [e if e.startswith("--") else f"--{e}" for e in extra]
    if args.seeds < 1:
        parser.error("--seeds must be >= 1")
    for name in ("source_folder", "target_folder"):
        if not Path(getattr(args, name)).is_dir():
            parser.error(f"--{name} {getattr(args, name)}: no such folder")
    return args


@dataclass
class Plan:
    """Where every seed's runs go."""

    seeds: List[int]
    pre_seeds: List[int]  # the seeds that pre-train (the first only with --share_pretrain)
    pre_folder: Dict[int, Path]
    target_prep: Dict[int, Path]
    run_folder: Dict[tuple, Path]


def prepare_splits(args, work: Path, target: Path) -> Plan:
    """Each seed's target split, by the transfer yaml's own ``prepare_data`` (training runs then skip it)."""
    seeds = [args.first_seed + i for i in range(args.seeds)]
    pre_seeds = seeds[:1] if args.share_pretrain else seeds
    plan = Plan(seeds, pre_seeds,
                {s: work / f"seed{pre_seeds[0] if args.share_pretrain else s}" / "pretrain" for s in seeds},
                {s: work / f"seed{s}" / "target" / "manifests" for s in seeds},
                {(v, s): work / f"seed{s}" / (v + (f"-{args.tag}" if args.tag else ""))
                 for s in seeds for v in args.variants})
    say(f"=== preparing {len(seeds)} target split(s)")
    for s in seeds:
        prepare(TRANSFER_YAML, {"seed": s, "data_folder": target, "test_ratio": args.test_ratio,
                                "dev_ratio": args.dev_ratio, "output_folder": plan.target_prep[s].parent,
                                "pretrained_path": plan.pre_folder[s] / "save"})
    return plan


def evaluation_stages(plan: Plan, args, work: Path) -> Dict[tuple, Stage]:
    """``recipes/evaluate.py`` of every model on the test and the dev split, by (variant, seed, split); those of
    both splits, run or not (``--splits``), so that a re-done training run invalidates them all."""
    evals = {}
    for s in plan.seeds:
        models = {NO_TRANSFER: (plan.pre_folder[s], work / f"seed{s}" / "eval_no_transfer")}
        models.update({v: (plan.run_folder[(v, s)], plan.run_folder[(v, s)] / "eval") for v in args.variants})
        for variant, (model, out) in models.items():
            for split in SPLITS:
                folder = out if split == "test" else out.with_name(out.name + "_" + split)
                options = {"seed": s, "model_hparams": model / "hyperparams.yaml", "device": args.device}
                if split != "test":
                    options["eval_folder"] = plan.target_prep[s] / split
                if args.no_asnorm:
                    options["cohort_csv"] = "null"
                evals[(variant, s, split)] = Stage(
                    f"evaluate {variant} seed {s} on {split}",
                    evaluate_command(EVAL_YAML, model / "save", plan.target_prep[s], folder, **options),
                    folder / "results.json", folder / "ablation.log")
    return evals


def training_stages(plan: Plan, args, source: Path, target: Path,
                    evals: Dict[tuple, Stage]) -> Tuple[List[Stage], List[Stage]]:
    """Pre-training runs (one per seed, or one shared) and transfer runs, interleaved by seed
    so that machine-load drift hits the variants alike; a re-done run invalidates its evaluations."""
    pre = [Stage(f"pre-train seed {s}",
                 train_command(PRETRAIN_YAML, {"seed": s, "data_folder": source, "output_folder": plan.pre_folder[s],
                                               "number_of_epochs": args.pretrain_epochs, "device": args.device},
                               shlex.split(args.pretrain_extra)),
                 plan.pre_folder[s] / RUN_MARKER, plan.pre_folder[s] / "ablation.log",
                 invalidates=[stage.done for (v, t, _), stage in evals.items()
                              if v == NO_TRANSFER and plan.pre_folder[t] == plan.pre_folder[s]])
           for s in plan.pre_seeds]
    runs = []
    for s in plan.seeds:
        for variant in args.variants:
            folder = plan.run_folder[(variant, s)]
            overrides = {"seed": s, "data_folder": target, "output_folder": folder, "prep_folder": plan.target_prep[s],
                         "skip_prep": True, "pretrained_path": plan.pre_folder[s] / "save", "device": args.device}
            if args.transfer_epochs:
                overrides["number_of_epochs"] = args.transfer_epochs
            runs.append(Stage(f"transfer {variant} seed {s}",
                              train_command(TRANSFER_YAML, overrides, VARIANTS[variant] + args.extra),
                              folder / RUN_MARKER, folder / "ablation.log",
                              invalidates=[evals[(variant, s, split)].done for split in SPLITS]))
    return pre, runs


def collect(plan: Plan, args, evals: Dict[tuple, Stage]) -> Dict[str, dict]:
    """Figures, speaker-bootstrap CIs and paired differences per split, step times, evaluated epochs."""
    summary: Dict[str, dict] = {}
    for variant in [NO_TRANSFER, *args.variants]:
        save = {s: (plan.pre_folder[s] if variant == NO_TRANSFER else plan.run_folder[(variant, s)])
                for s in plan.seeds}
        steps = [step_time(save[s] / "train_log.txt") for s in plan.seeds]
        summary[variant] = {"step_time_s": (None if variant == NO_TRANSFER or None in steps
                                            else round(statistics.mean(steps), 4)),
                            "evaluated_epoch": [best_checkpoint_epoch(save[s] / "save") for s in plan.seeds]}
    for split in args.splits:
        say(f"=== bootstrap ({args.bootstrap_resamples} speaker resamples) on {split}")
        table = compare(evals, split, plan.seeds, [NO_TRANSFER, *args.variants], plan.target_prep,
                        args.bootstrap_resamples)
        for variant, conditions in table.items():
            (summary[variant] if split == "test" else summary[variant].setdefault("dev", {})).update(conditions)
    return summary


def main(argv: List[str]) -> None:
    args = parse_args(argv)
    threads = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0)
    started = time.time()
    work = Path(args.work_folder).resolve()
    source, target = Path(args.source_folder).resolve(), Path(args.target_folder).resolve()

    plan = prepare_splits(args, work, target)
    evals = evaluation_stages(plan, args, work)
    pre_stages, runs = training_stages(plan, args, source, target, evals)
    chosen = [stage for (_, _, split), stage in evals.items() if split in args.splits]
    for stages, what in ((pre_stages, "pre-train"), (runs, "transfer"), (chosen, "evaluate")):
        run_stages(stages, what, args.jobs, threads)
    summary = collect(plan, args, evals)

    out = Path(args.output_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"seeds": plan.seeds, "shared_pretraining": args.share_pretrain, "source_folder": str(source),
            "target_folder": str(target), "pretrain_epochs": args.pretrain_epochs,
            "transfer_epochs": args.transfer_epochs or "yaml default", "extra_overrides": args.extra,
            "pretrain_extra": args.pretrain_extra, "tag": args.tag, "work_folder": str(work),
            "jobs": args.jobs, "threads_per_run": threads or "torch default", "splits": args.splits,
            "command": [PY, "benchmarks/ablation.py", *argv], "eer_unit": "fraction",
            "bootstrap_resamples": args.bootstrap_resamples,
            "ci": "95 % percentile interval of the mean over seeds, test speakers resampled",
            "step_time_definition": "seconds per optimiser step, mean of the epochs' step_time_s in train_log.txt",
            "runtime_s_this_invocation": round(time.time() - started, 1)}
    write_json(out, summary)
    write_json(out.with_suffix(".meta.json"), meta)
    print_report(summary, plan.seeds, plan.target_prep, args.splits)
    print(f"\nwrote {out} and {out.with_suffix('.meta.json')}; this invocation took "
          f"{time.time() - started:.0f} s")


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (StageError, PrepError) as err:
        sys.exit(f"ablation: {err}")
