#!/usr/bin/env python3
"""Ablation of the transfer losses: plain AAM fine-tune vs sub-center vs KL vs joint.

For every seed S (``--first_seed`` + 0, 1, ...):

1. pre-train on the source corpus: ``recipes/train.py hparams/pretrain_demo.yaml``
   (``--seed=S``; one pre-training per seed, or one shared by all seeds with
   ``--share_pretrain``, which the table then says);
2. split the target corpus with ``hparams/transfer_demo.yaml``'s own
   ``prepare_data`` (seed S): training speakers, held-out test speakers with
   enrolment, test files, 1/2/3 s crops and trial lists. Every variant of a
   seed uses this one split;
3. transfer on the target training speakers, ``recipes/train.py
   hparams/transfer_demo.yaml --seed=S --number_of_epochs=E``, once per variant
   (the overrides are the ablation switches of that yaml's header)::

       baseline_aam  --num_subcenters=1 --topk=0 --kl_final_weight=0 --short_loss_weight=0
       subcenter     --kl_final_weight=0 --short_loss_weight=0
       longshort_kl  --num_subcenters=1 --topk=0
       joint         (the yaml's defaults: K=3 sub-centers, short-crop CE, KL)

4. evaluate the pre-trained model (``no_transfer``) and each transferred model
   on the held-out target speakers: ``recipes/evaluate.py
   hparams/eval_demo.yaml`` (conditions 1s, 2s, 3s when the trial list is not
   empty, full; each also +asnorm). As in the recipes, the evaluated
   checkpoint is the one with the lowest speaker-ID validation error
   (newest on ties); its epoch is printed.

Every stage is a subprocess running the project's own command (printed, its
output in ``<run folder>/ablation.log``). Stages are resumable: a training run
whose ``ablation_run.json`` exists and an evaluation whose ``results.json``
exists are skipped; a training run that is re-done invalidates its
evaluation. A run folder made with a different command is an error (use
another ``--work_folder`` or ``--tag``).

Step time (``step_time_s``): seconds per optimiser step of the transfer run,
= total elapsed time of SpeechBrain's training progress bars (tqdm, summed
over epochs; data loading, augmentation, forward, backward and update
included; validation, start-up and checkpointing excluded) / number of
training steps in those bars; the mean over seeds. Where no bar can be read
(e.g. a resumed run), the run's wall time / its optimiser steps is used. The
figure is wall time on a shared machine: compare variants of one invocation
only, and expect the machine's load to move it (with ``--jobs 2`` two runs
share the CPU; on a busy machine ``--threads 1`` per run is much faster than
torch's default, whose threads spin waiting for each other). All variants forward both the long and the short crop (the
TransferBrain does one forward of ``[long; short]``; the baseline merely gives
the short crop weight 0), so they cost about the same per step.
``no_transfer`` has ``step_time_s: null`` (no transfer step; the
pre-training step time is printed and saved in the sidecar).

Output ``--output_json``::

    {"<variant>": {"<condition>": {"eer": [per seed], "min_dcf_0.01": [per seed]},
                   "step_time_s": float or null}}

with conditions ``1s``, ``2s``, ``3s``, ``full`` and their ``+asnorm``
versions, as in ``recipes/evaluate.py``'s ``results.json``; EER is a
fraction (as in ``results.json``), the table prints it in %. Details (seeds,
commands, budget, evaluated epochs, step times per seed) go to
``<output_json stem>.meta.json`` beside it.

Usage::

    python benchmarks/ablation.py --source_folder SRC --target_folder TGT --seeds 3 \\
        --output_json ablation.json [--work_folder DIR] [--pretrain_epochs 4] \\
        [--transfer_epochs 5] [--jobs 1] [--threads N] [--variants joint ...] [--tag T] \\
        [--extra --temperature=4 --short_len=1.5]

``--extra`` must come last: everything after it is passed to every transfer
run (``key=value`` is read as ``--key=value``); ``--pretrain_extra`` takes one
quoted string of overrides for the pre-training runs.
"""
import argparse
import json
import math
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PRETRAIN_YAML = "hparams/pretrain_demo.yaml"
TRANSFER_YAML = "hparams/transfer_demo.yaml"
EVAL_YAML = "hparams/eval_demo.yaml"

NO_TRANSFER = "no_transfer"
VARIANTS: Dict[str, List[str]] = {  # the ablation switches of hparams/transfer_demo.yaml
    "baseline_aam": ["--num_subcenters=1", "--topk=0", "--kl_final_weight=0", "--short_loss_weight=0"],
    "subcenter": ["--kl_final_weight=0", "--short_loss_weight=0"],
    "longshort_kl": ["--num_subcenters=1", "--topk=0"],
    "joint": [],
}
CONDITION_ORDER = ["1s", "2s", "3s", "full"]
METRICS = ("eer", "min_dcf_0.01")
RUN_MARKER = "ablation_run.json"

_print_lock = threading.Lock()


def say(text: str) -> None:
    """Print a progress line at once (safe from worker threads)."""
    with _print_lock:
        print(text, flush=True)


# ---------------------------------------------------------------- step time
_BAR = re.compile(r"(\d+)/(\d+) \[(\d+(?::\d+){1,2})<")


def _seconds(clock: str) -> int:
    """tqdm's ``MM:SS`` or ``H:MM:SS`` in seconds."""
    total = 0
    for part in clock.split(":"):
        total = 60 * total + int(part)
    return total


def training_bar_time(log_text: str) -> Tuple[int, float]:
    """Steps and elapsed seconds of SpeechBrain's training progress bars in a log.

    A training bar is a tqdm line with a ``train_loss=`` postfix; the last
    state of each bar gives its steps (final n - first n) and elapsed time.

    Example
    -------
    >>> log = ("  0%|  | 0/3 [00:00<?, ?it/s]\\r 33%|# | 1/3 [00:02<00:04, train_loss=5]"
    ...        "\\r100%|##| 3/3 [00:06<00:00, train_loss=4]\\n100%|##| 2/2 [00:01<00:00]\\n"
    ...        "  0%|  | 0/3 [00:00<?, ?it/s]\\r100%|##| 3/3 [01:04<00:00, train_loss=3]\\n")
    >>> training_bar_time(log)
    (6, 70.0)
    """
    bars: List[List[int]] = []  # [first n, last n, total, elapsed]
    for segment in re.split(r"[\r\n]", log_text):
        match = _BAR.search(segment)
        if not match:
            continue
        n, total, elapsed = int(match.group(1)), int(match.group(2)), _seconds(match.group(3))
        is_train = "train_loss=" in segment
        if n == 0 and not is_train:  # a bar's first display has no postfix yet
            bars.append([0, 0, total, elapsed, None])
            continue
        if bars and bars[-1][4] is None and bars[-1][2] == total and n >= bars[-1][1]:
            bars[-1][4] = is_train  # first update decides the bar's kind
        if bars and bars[-1][2] == total and n >= bars[-1][1] and bars[-1][4] == is_train:
            bars[-1][1], bars[-1][3] = n, elapsed
        else:
            bars.append([n, n, total, elapsed, is_train])
    train = [b for b in bars if b[4]]
    return sum(b[1] - b[0] for b in train), float(sum(b[3] for b in train))


# ---------------------------------------------------------------- stages
class Stage:
    """One resumable subprocess: a training run or an evaluation."""

    def __init__(self, name: str, cmd: Sequence[str], folder: Path, done_file: str,
                 invalidates: Sequence[Path] = ()):
        self.name, self.cmd, self.folder = name, [str(c) for c in cmd], folder
        self.done = folder / done_file
        self.invalidates = list(invalidates)  # results made from this run's output

    def run(self, counter: str) -> dict:
        """Run unless done; returns the stage record (written for training runs)."""
        pretty = " ".join(shlex.quote(c) for c in self.cmd)
        if self.done.is_file():
            if self.done.name == RUN_MARKER:
                record = json.loads(self.done.read_text())
                if record["command"] != self.cmd:
                    sys.exit(f"ablation: {self.folder} holds a run made with another command:\n"
                             f"  {' '.join(record['command'])}\nuse another --work_folder or --tag")
                say(f"[{counter}] skip {self.name} (done: {self.done})")
                return record
            say(f"[{counter}] skip {self.name} (done: {self.done})")
            return {"command": self.cmd}
        say(f"[{counter}] start {self.name}\n    $ {pretty}")
        self.folder.mkdir(parents=True, exist_ok=True)
        log_path = self.folder / "ablation.log"
        start = time.time()
        with open(log_path, "w", encoding="utf-8") as log:
            code = subprocess.run(self.cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                  env=child_env()).returncode
        wall = time.time() - start
        if code != 0:
            tail = log_path.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            sys.exit(f"ablation: stage '{self.name}' failed (exit {code}); last lines of {log_path}:\n"
                     + "\n".join(tail))
        steps, bar_seconds = training_bar_time(log_path.read_text(encoding="utf-8", errors="replace"))
        record = {"command": self.cmd, "wall_s": round(wall, 2), "bar_steps": steps,
                  "bar_seconds": bar_seconds}
        if self.done.name == RUN_MARKER:
            self.done.write_text(json.dumps(record, indent=1))
        for path in self.invalidates:
            path.unlink(missing_ok=True)
        say(f"[{counter}] done  {self.name} in {wall:.0f} s")
        return record


_threads_per_job = 0


def child_env() -> Dict[str, str]:
    """Environment of the subprocesses: offline, and CPU threads shared between jobs."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    if _threads_per_job:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(_threads_per_job)
    return env


def run_all(stages: List[Stage], jobs: int, what: str) -> List[dict]:
    """Run stages (``jobs`` at a time); stops on the first failure."""
    say(f"\n=== {what}: {len(stages)} run(s)")
    labels = [f"{what} {i + 1}/{len(stages)}" for i in range(len(stages))]
    if jobs <= 1:
        return [s.run(label) for s, label in zip(stages, labels)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda pair: pair[0].run(pair[1]), zip(stages, labels)))


# ---------------------------------------------------------------- helpers
def prepare(yaml: str, overrides: Dict[str, str]) -> None:
    """Run the yaml's own ``prepare_data`` (skipped by it when already prepared).

    Overrides go in as yaml text, as on the command line, so ``seed: 7`` is an int.
    """
    from hyperpyyaml import load_hyperpyyaml

    text = "\n".join(f"{key}: {json.dumps(value)}" if key != "seed" else f"seed: {int(value)}"
                     for key, value in overrides.items())
    with open(ROOT / yaml, encoding="utf-8") as f:
        load_hyperpyyaml(f, text)["prepare_data"]()


def count_speakers(train_csv: Path) -> int:
    """Distinct ``spk_id`` values of a manifest."""
    import csv

    with open(train_csv, newline="", encoding="utf-8") as f:
        return len({row["spk_id"] for row in csv.DictReader(f)})


def evaluated_epoch(save_folder: Path) -> Optional[int]:
    """Epoch of the checkpoint ``recipes/evaluate.py`` loads (lowest ErrorRate, newest on ties)."""
    import yaml

    best = None
    for ckpt in save_folder.glob("CKPT+*"):
        meta = yaml.safe_load((ckpt / "CKPT.yaml").read_text()) or {}
        key = (meta.get("ErrorRate", math.inf), -ckpt.stat().st_mtime)
        if best is None or key < best[0]:
            best = (key, meta.get("epoch"))
    return None if best is None else best[1]


def flags(overrides: Dict[str, str]) -> List[str]:
    return [f"--{k}={v}" for k, v in overrides.items()]


def mean_std(values: Sequence[float]) -> str:
    """``mean ± sample std`` (``mean`` alone for one value)."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}"


def ordered_conditions(conditions) -> List[str]:
    """1s, 2s, 3s, full, then their +asnorm versions, then anything else."""
    base = [c for c in CONDITION_ORDER if c in conditions]
    norm = [f"{c}+asnorm" for c in CONDITION_ORDER if f"{c}+asnorm" in conditions]
    return base + norm + sorted(set(conditions) - set(base) - set(norm))


def print_table(summary: Dict[str, dict], pretrain_step: Optional[float]) -> None:
    """EER % and minDCF@0.01 (mean ± std over seeds) per condition, step time per variant.

    One block for raw cosine scores, one for AS-norm scores (when present).
    """
    conditions = ordered_conditions({c for v in summary.values() for c in v if c != "step_time_s"})
    blocks = [("raw cosine", [c for c in conditions if not c.endswith("+asnorm")]),
              ("AS-norm", [c for c in conditions if c.endswith("+asnorm")])]
    width = 15
    for title, group in blocks:
        if not group:
            continue
        names = [c.replace("+asnorm", "") for c in group]
        print(f"\n[{title}]\n{'variant':<14}" + "".join(f"{n + ' EER %':>{width}}{n + ' minDCF':>{width}}"
                                                     for n in names) + f"{'step s':>9}")
        for variant, result in summary.items():
            cells = "".join(
                f"{mean_std([100 * e for e in result[c]['eer']]) if c in result else '-':>{width}}"
                f"{mean_std(result[c]['min_dcf_0.01']) if c in result else '-':>{width}}"
                for c in group)
            step = result["step_time_s"]
            if step is None:
                step_cell = f"({pretrain_step:.2f})" if pretrain_step else "-"
            else:
                step_cell = f"{step:.2f}"
            print(f"{variant:<14}{cells}{step_cell:>9}")


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
    parser.add_argument("--transfer_epochs", type=int, default=5)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS),
                        help="transfer variants to run (no_transfer is always evaluated)")
    parser.add_argument("--tag", default="", help="suffix of the transfer run folders (for --extra studies)")
    parser.add_argument("--share_pretrain", action="store_true",
                        help="one pre-training (first seed) for all seeds, to save time")
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


def main(argv: List[str]) -> None:
    global _threads_per_job
    args = parse_args(argv)
    _threads_per_job = args.threads or (max(1, (os.cpu_count() or 1) // args.jobs) if args.jobs > 1 else 0)
    started = time.time()
    work = Path(args.work_folder).resolve()
    seeds = [args.first_seed + i for i in range(args.seeds)]
    source, target = Path(args.source_folder).resolve(), Path(args.target_folder).resolve()
    device = [f"--device={args.device}"]
    pre_extra = shlex.split(args.pretrain_extra)

    # ---- manifests: the yamls' own prepare_data
    pre_seeds = seeds[:1] if args.share_pretrain else seeds
    pre_folder = {s: work / f"seed{pre_seeds[0] if args.share_pretrain else s}" / "pretrain" for s in seeds}
    target_prep = {s: work / f"seed{s}" / "target" / "manifests" for s in seeds}
    say(f"=== preparing manifests ({len(pre_seeds)} source, {len(seeds)} target split(s))")
    pre_over, pre_speakers, target_speakers = {}, {}, {}
    for s in pre_seeds:
        pre_over[s] = {"seed": str(s), "data_folder": str(source), "output_folder": str(pre_folder[s])}
        prepare(PRETRAIN_YAML, pre_over[s])
        pre_speakers[s] = count_speakers(pre_folder[s] / "manifests" / "train.csv")
    for s in seeds:
        prepare(TRANSFER_YAML, {"seed": str(s), "data_folder": str(target),
                                "output_folder": str(target_prep[s].parent),
                                "pretrained_path": str(pre_folder[s] / "save")})
        target_speakers[s] = count_speakers(target_prep[s] / "train.csv")

    # ---- evaluations (built first: a re-done training run invalidates its evaluation)
    run_folder = {(v, s): work / f"seed{s}" / (v + (f"-{args.tag}" if args.tag else ""))
                  for s in seeds for v in args.variants}
    evals = {}
    for s in seeds:
        models = {NO_TRANSFER: (pre_folder[s], work / f"seed{s}" / "eval_no_transfer")}
        models.update({v: (run_folder[(v, s)], run_folder[(v, s)] / "eval") for v in args.variants})
        for variant, (model, out) in models.items():
            evals[(variant, s)] = Stage(
                f"evaluate {variant} seed {s}",
                [PY, "recipes/evaluate.py", EVAL_YAML, f"--seed={s}", f"--model_folder={model / 'save'}",
                 f"--model_hparams={model / 'hyperparams.yaml'}", f"--prep_folder={target_prep[s]}",
                 f"--output_folder={out}", *device], out, "results.json")

    # ---- pre-training (one per seed, or one shared)
    pre_stages = [Stage(f"pre-train seed {s}",
                        [PY, "recipes/train.py", PRETRAIN_YAML, *flags(pre_over[s]),
                         f"--out_n_neurons={pre_speakers[s]}", f"--number_of_epochs={args.pretrain_epochs}",
                         *device, *pre_extra], pre_folder[s], RUN_MARKER,
                        invalidates=[evals[(NO_TRANSFER, t)].done for t in seeds if pre_folder[t] == pre_folder[s]])
                  for s in pre_seeds]

    # ---- transfer runs, interleaved by seed so machine-load drift hits variants alike
    runs = {}
    for s in seeds:
        for variant in args.variants:
            folder = run_folder[(variant, s)]
            cmd = [PY, "recipes/train.py", TRANSFER_YAML, f"--seed={s}", f"--data_folder={target}",
                   f"--output_folder={folder}", f"--prep_folder={target_prep[s]}", "--skip_prep=True",
                   f"--pretrained_path={pre_folder[s] / 'save'}", f"--out_n_neurons={target_speakers[s]}",
                   f"--number_of_epochs={args.transfer_epochs}", *device, *VARIANTS[variant], *args.extra]
            runs[(variant, s)] = Stage(f"transfer {variant} seed {s}", cmd, folder, RUN_MARKER,
                                       invalidates=[evals[(variant, s)].done])

    pre_records = run_all(pre_stages, args.jobs, "pre-train")
    order = list(runs)
    records = dict(zip(order, run_all([runs[k] for k in order], args.jobs, "transfer")))
    run_all(list(evals.values()), args.jobs, "evaluate")

    # ---- collect
    def step_time(record: dict, epochs: int, train_csv: Path, batch_size: int = 16) -> Optional[float]:
        if record.get("bar_steps"):
            return record["bar_seconds"] / record["bar_steps"]
        rows = max(sum(1 for _ in open(train_csv)) - 1, 0)
        steps = epochs * max(rows // batch_size, 1)
        return record["wall_s"] / steps if record.get("wall_s") else None

    summary: Dict[str, dict] = {}
    meta = {"seeds": seeds, "shared_pretraining": args.share_pretrain, "source_folder": str(source),
            "target_folder": str(target), "pretrain_epochs": args.pretrain_epochs,
            "transfer_epochs": args.transfer_epochs, "extra_overrides": args.extra,
            "pretrain_extra": pre_extra, "tag": args.tag, "work_folder": str(work),
            "jobs": args.jobs, "threads_per_run": _threads_per_job or "torch default",
            "command": [PY, "benchmarks/ablation.py", *argv], "eer_unit": "fraction",
            "step_time_definition": "sum of tqdm training-bar elapsed / steps (fallback wall / steps)",
            "runs": {}}
    pre_steps = [step_time(r, args.pretrain_epochs, st.folder / "manifests" / "train.csv")
                 for r, st in zip(pre_records, pre_stages)]
    pre_steps = [p for p in pre_steps if p is not None]
    meta["pretrain_step_time_s"] = statistics.mean(pre_steps) if pre_steps else None
    for variant in [NO_TRANSFER, *args.variants]:
        result: Dict[str, object] = {}
        per_seed_steps = []
        for s in seeds:
            res = json.loads(evals[(variant, s)].done.read_text())
            for cond in ordered_conditions(res):
                if not isinstance(res[cond], dict) or "eer" not in res[cond]:
                    continue
                slot = result.setdefault(cond, {m: [] for m in METRICS})
                for m in METRICS:
                    slot[m].append(res[cond][m])
            save = (pre_folder[s] if variant == NO_TRANSFER else runs[(variant, s)].folder) / "save"
            info = {"evaluated_epoch": evaluated_epoch(save),
                    "results": str(evals[(variant, s)].done)}
            if variant != NO_TRANSFER:
                st = step_time(records[(variant, s)], args.transfer_epochs, target_prep[s] / "train.csv")
                info.update(step_time_s=st, wall_s=records[(variant, s)].get("wall_s"))
                if st is not None:
                    per_seed_steps.append(st)
            meta["runs"][f"{variant}/seed{s}"] = info
        # conditions missing for some seed (e.g. an empty 3 s list) would misalign: keep full ones
        result = {c: v for c, v in result.items() if len(v["eer"]) == len(seeds)}
        result["step_time_s"] = (round(statistics.mean(per_seed_steps), 4)
                                 if per_seed_steps and variant != NO_TRANSFER else None)
        summary[variant] = result

    out = Path(args.output_json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))
    meta["runtime_s_this_invocation"] = round(time.time() - started, 1)
    meta_path = out.with_suffix(".meta.json")
    meta_path.write_text(json.dumps(meta, indent=2))

    pretrain_note = ("ONE pre-training (seed %d) shared by all seeds" % seeds[0] if args.share_pretrain
                     else "one pre-training per seed")
    print(f"\n=== ablation: EER % and normalised minDCF (p=0.01), mean ± std over seeds {seeds}")
    print(f"    pre-train {args.pretrain_epochs} epochs ({pretrain_note}), transfer "
          f"{args.transfer_epochs} epochs; test: held-out target speakers"
          + (f"; transfer overrides {' '.join(args.extra)}" if args.extra else "")
          + f"; {args.jobs} run(s) at a time, {_threads_per_job or 'default'} thread(s) each")
    print_table(summary, meta["pretrain_step_time_s"])
    print("    step s: seconds per transfer optimiser step (tqdm training bars); "
          "(x) = pre-training step, another crop length and batch")
    epochs = {k: v["evaluated_epoch"] for k, v in meta["runs"].items()}
    print(f"    evaluated checkpoint epochs (best speaker-ID validation): "
          + ", ".join(f"{k}:{v}" for k, v in epochs.items()))
    print(f"\nwrote {out} and {meta_path}; this invocation took {time.time() - started:.0f} s")


if __name__ == "__main__":
    main(sys.argv[1:])
