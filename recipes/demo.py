#!/usr/bin/env python3
"""The whole method end to end on the built-in corpus (``make demo``).

generate corpora -> pre-train (source speakers) -> transfer with the joint loss (target speakers) -> train the
digit recogniser (target training speakers) -> evaluate (pre-trained and transferred, by test duration; the
recogniser's digit error rate) -> export (with ``digits/``) -> verify two files through SpeechBrain's
``SpeakerRecognition`` -> enrol three speakers, then a genuine, an impostor and a replayed claim at the CLI, then
three prompted claims: the prompt said, other digits said, a reused nonce.

Every stage is one of the project's commands (``speechbrain_ext.pipeline``), printed before it runs, so the
demo doubles as a worked example; the commands resume (corpora and splits already made, finished training),
so an interrupted demo continues.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List

from speechbrain_ext.digit_evaluation import digits_table
from speechbrain_ext.manifest import read_manifest
from speechbrain_ext.metrics import interval_text
from speechbrain_ext.pipeline import (PY, Stage, StageError, evaluate_command, export_command, synth_command,
                                      train_command)


def run(cmd: List, timings: Dict[str, float], name: str) -> None:
    """Run one stage (its command echoed) and time it."""
    timings[name] = Stage(name, cmd).run()["wall_s"]


def test_files(test_csv: Path) -> Dict[str, List[str]]:
    """The full-length test files of each test speaker (not the ``@``-named crops), speakers sorted."""
    by_spk: Dict[str, List[str]] = {}
    for row in read_manifest(test_csv):
        if "@" not in row.id:
            by_spk.setdefault(row.spk_id, []).append(row.wav)
    return dict(sorted(by_spk.items()))


def verify_with_speechbrain(model: Path, test_csv: Path) -> None:
    """Score a genuine and an impostor pair through SpeechBrain's ``SpeakerRecognition``
    interface, with the folder's deployed score and threshold (``load_verifier``)."""
    from speechbrain_ext.inference import load_verifier

    by_spk = test_files(test_csv)
    spk_a, spk_b = list(by_spk)[:2]
    deployed = json.loads((model / "threshold.json").read_text())
    verifier = load_verifier(str(model))
    print(f"\n=== verify through SpeechBrain's SpeakerRecognition interface (load_verifier({model}))")
    for label, (a, b) in (("same speaker", by_spk[spk_a][:2]), ("different speakers",
                                                               (by_spk[spk_a][0], by_spk[spk_b][0]))):
        score, decision = verifier.verify_files(a, b)
        print(f"{label:>18}: {Path(a).parent.name}/{Path(a).name} vs {Path(b).parent.name}/"
              f"{Path(b).name}: {deployed['score']} {float(score):.3f} -> "
              f"{'accept' if bool(decision) else 'reject'} ({deployed.get('calibration', {}).get('mode', 'far')}-mode "
              f"decision of threshold.json)")


def access_control_demo(model: Path, manifests: Path, db: Path, corpus: Path, timings: Dict[str, float]) -> None:
    """Enrol three test speakers, make a genuine, an impostor and a replayed claim through the CLI, then the
    prompted claims (:func:`prompted_claims`, voices from ``corpus``), and print the audit log of it all."""
    enroll = {r.spk_id: r.wav for r in read_manifest(manifests / "enroll.csv")}
    tests = {spk: wavs[0] for spk, wavs in test_files(manifests / "test.csv").items()}
    spk_a, spk_b, spk_c = sorted(enroll)[:3]
    for suffix in ("", "-wal", "-shm"):  # a re-exported model may not reuse old voiceprints
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    cli = [PY, "-m", "speechbrain_ext"]
    for spk in (spk_a, spk_b, spk_c):
        run(cli + ["enroll", "--model", model, "--db", db, spk, enroll[spk]], timings,
            f"enrol {spk} (access-control CLI)")
    run(cli + ["list", "--db", db], timings, "list enrolled speakers")
    for claim, wav in (("genuine", tests[spk_a]), ("impostor", tests[spk_b]), ("replayed genuine", tests[spk_a])):
        name = f"verify the {claim} claim to be {spk_a}"
        record = Stage(name, cli + ["verify", "--model", model, "--db", db, spk_a, wav], ok=(0, 1)).run()
        timings[name] = record["wall_s"]
        print(f"exit status {record['exit']}: {'accepted' if record['exit'] == 0 else 'rejected'}")
    prompted_claims(model, db, corpus, test_files(manifests / "test.csv")[spk_a][1], spk_a, timings)
    run(cli + ["log", "--db", db], timings, "audit log: enrolments and claims")


def prompted_claims(model: Path, db: Path, corpus: Path, other_digits: str, speaker: str,
                    timings: Dict[str, float]) -> None:
    """Three prompted claims for ``speaker`` through the CLI: the prompt said in the speaker's voice (synthesised
    from ``corpus``), accepted; a recording of the speaker saying other digits (``other_digits``, a test file)
    against a fresh prompt, rejected as ``wrong_digits``; the first nonce handed in again, rejected."""
    import subprocess

    from data_prep.synth_digits import say_digits

    if not (model / "digits").is_dir():
        print(f"\n(prompted claims skipped: {model} has no digit recogniser, digits/)")
        return
    cli = [PY, "-m", "speechbrain_ext"]

    def challenge() -> dict:
        start = time.time()
        issued = subprocess.run([str(a) for a in cli + ["challenge", "--model", model, "--db", db, speaker,
                                                        "--json"]], capture_output=True, text=True, check=True)
        timings[f"challenge {speaker}"] = timings.get(f"challenge {speaker}", 0.0) + time.time() - start
        prompt = json.loads(issued.stdout)
        print(f"\nprompt for {speaker}: say {prompt['digits']} (nonce {prompt['nonce']}, until {prompt['expires_at']})")
        return prompt

    first = challenge()
    said = say_digits(corpus, speaker, first["digits"], db.parent / "prompted_claims")
    second = challenge()
    for claim, wav, nonce in (("prompted genuine", said, first["nonce"]),
                              ("other digits, fresh prompt", Path(other_digits), second["nonce"]),
                              ("reused nonce", said, first["nonce"])):
        name = f"verify the {claim} claim to be {speaker}"
        record = Stage(name, cli + ["verify", "--model", model, "--db", db, speaker, wav, "--challenge", nonce],
                       ok=(0, 1)).run()
        timings[name] = record["wall_s"]
        print(f"exit status {record['exit']}: {'accepted' if record['exit'] == 0 else 'rejected'}")


def cell(r: dict, metric: str, scale: float = 1, digits: int = 3) -> str:
    """``value [low, high]`` of a results.json metric, ``-`` when absent."""
    return interval_text(r[metric], r.get(f"{metric}_ci"), scale, digits) if metric in r else "-"


def results_table(pre: Dict[str, dict], tra: Dict[str, dict]) -> str:
    """EER %, minDCF and actDCF at 0.01 by condition, pre-trained vs transferred, with 95 % CIs."""
    lines = [f"{'condition':<12}{'trials':>8}{'pre-trained EER %':>24}{'transferred EER %':>24}"
             f"{'pre minDCF':>22}{'transferred minDCF':>22}{'transferred actDCF':>22}{'transferred Cllr':>22}"]
    for cond, r in tra.items():
        if cond == "digits":  # the recogniser's results, printed by digits_table
            continue
        p = pre.get(cond, {})
        lines.append(f"{cond:<12}{r['num_trials']:>8}{cell(p, 'eer', 100, 2):>24}{cell(r, 'eer', 100, 2):>24}"
                     f"{cell(p, 'min_dcf_0.01'):>22}{cell(r, 'min_dcf_0.01'):>22}{cell(r, 'act_dcf_0.01'):>22}"
                     f"{cell(r, 'cllr'):>22}")
    return "\n".join(lines)


def deployment_lines(deployed: dict, tra: Dict[str, dict]) -> List[str]:
    """The target-FAR threshold's measured test FAR (CI), and the deployed decision's FAR/FRR by duration."""
    kind = "" if deployed["score"] == "cosine" else f"+{deployed['score']}"
    full = tra.get(f"full{kind}", {})
    measured = (f"{cell(full, 'far_at_threshold', 100, 2)} % on the {full['num_trials']} full-length test trials"
                if "far_at_threshold" in full else "not measured (no full-length test list)")
    cal = deployed["calibration"]
    rule = (f"llr >= {cal['llr_threshold']:.2f} (p_target {cal['p_target']:g}, c_miss {cal['c_miss']:g}, "
            f"c_fa {cal['c_fa']:g})" if cal["mode"] == "llr" else f"score >= {deployed['threshold']:.4f}")
    lines = [f"target-FAR threshold {deployed['threshold']:.4f} on {deployed['score']} scores, chosen on the dev "
             f"speakers for a FAR of {100 * deployed['target_far']:g} %: measured test FAR {measured}",
             f"deployed decision ({cal['mode']} mode): {rule}; what it means at the door:"]
    for cond in ("1s", "2s", "full"):
        r = tra.get(f"{cond}{kind}")
        if r and "far_deployed" in r:
            lines.append(f"  {cond:>4}: FAR {cell(r, 'far_deployed', 100, 2)} %, genuine claims turned away "
                         f"(FRR) {cell(r, 'frr_deployed', 100, 2)} %")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_folder", default="demo_output", help="where everything goes")
    parser.add_argument("--source_speakers", type=int, default=40)
    parser.add_argument("--source_utts", type=int, default=16)
    parser.add_argument("--target_speakers", type=int, default=72,
                        help="split 35 %% test, 30 %% dev (>= 20 dev speakers for the threshold), the rest "
                             "training (every pair a trial)")
    parser.add_argument("--target_utts", type=int, default=20,
                        help="20: >= 5,000 trials at 1 s and full length (few strings reach 3 s)")
    parser.add_argument("--pretrain_epochs", type=int, default=4)
    parser.add_argument("--transfer_epochs", type=int, default=4,
                        help="fewer than the yaml's 20, to keep the demo short")
    parser.add_argument("--digits_epochs", type=int, default=10, help="digit recogniser epochs (about a minute)")
    parser.add_argument("--seed", type=int, default=1986)
    args = parser.parse_args()
    if min(args.source_speakers, args.target_speakers) < 8 or min(args.source_utts, args.target_utts) < 6:
        parser.error("use at least 8 speakers and 6 utterances per speaker in each domain")

    out = Path(args.output_folder).resolve()
    source, target = out / "corpus" / "source", out / "corpus" / "target"
    pre, tra, digits = out / "pretrain", out / "transfer", out / "digits"
    timings: Dict[str, float] = {}

    run(synth_command(source, "source", args.source_speakers, args.source_utts, args.seed), timings,
        "generate source corpus (English, text-independent)")
    run(synth_command(target, "target", args.target_speakers, args.target_utts, args.seed), timings,
        "generate target corpus (Mandarin digit strings)")
    run(train_command("hparams/pretrain_demo.yaml", {"seed": args.seed, "data_folder": source, "output_folder": pre,
                                                     "number_of_epochs": args.pretrain_epochs}),
        timings, "pre-train ECAPA-TDNN (source)")
    split = {"seed": args.seed, "data_folder": target, "test_ratio": 0.35, "dev_ratio": 0.3}
    run(train_command("hparams/transfer_demo.yaml", {**split, "output_folder": tra, "pretrained_path": pre / "save",
                                                      "number_of_epochs": args.transfer_epochs}),
        timings, "transfer with the joint loss (target)")
    # the transfer run's split (same seed and ratios: the same test and dev speakers held out), one example per
    # string, and its augmentation sources
    run(train_command("hparams/digits_ctc_demo.yaml", {
        **split, "output_folder": digits, "noise_csv": tra / "augment" / "noise.csv",
        "rir_csv": tra / "augment" / "rir.csv", "number_of_epochs": args.digits_epochs}),
        timings, "train the digit recogniser (CTC, target training speakers)")
    for model, name, what, extra in (
            (pre, "eval_pretrained", "the pre-trained model on the target test speakers", {}),
            (tra, "eval_transfer", "the transferred model (threshold calibrated on the dev speakers) and the "
                                   "digit recogniser", {"digits_model": digits / "save"})):
        run(evaluate_command("hparams/eval_demo.yaml", model / "save", tra / "manifests", out / name, **extra),
            timings, f"evaluate {what}")
    run(export_command(tra / "save", out / "model", out / "eval_transfer", digits / "save"), timings,
        "export a SpeakerRecognition model folder with the digit recogniser (digits/)")
    start = time.time()
    verify_with_speechbrain(out / "model", tra / "manifests" / "test.csv")
    timings["verify two files"] = time.time() - start

    access_control_demo(out / "model", tra / "manifests", out / "voiceprints.db", target, timings)

    pre_res = json.loads((out / "eval_pretrained" / "results.json").read_text())
    tra_res = json.loads((out / "eval_transfer" / "results.json").read_text())
    print("\n=== results on the target test speakers (all enrolment x test pairs): "
          "value [95 % speaker-bootstrap CI]")
    print(results_table(pre_res, tra_res))
    if "digits" in tra_res:
        print("\n=== digit recogniser on the target test speakers: digit error rate and string accuracy, "
              "value [95 % speaker-bootstrap CI]")
        print(digits_table(tra_res["digits"]))
    deployed = json.loads((out / "model" / "threshold.json").read_text())
    print("")
    print("\n".join(deployment_lines(deployed, tra_res)))
    print("the claims above are fixed files, not picked to succeed: at the measured FAR some impostor "
          "claims may be accepted")
    print("\n=== time per stage")
    for name, sec in timings.items():
        print(f"{sec:7.1f} s  {name}")
    print(f"{sum(timings.values()):7.1f} s  total")
    print(f"\nresults.json: {out / 'eval_transfer' / 'results.json'}")
    print(f"results.md, det.png, score_hist.png: {out / 'eval_transfer'}")
    print(f"exported model: {out / 'model'}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        main()
    except StageError as err:
        sys.exit(f"demo: {err}")
