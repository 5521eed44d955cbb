"""recipes/evaluate.py end to end on a tiny prepared set with a tiny random model, and bad trial lists."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from data_prep.folder_prepare import prepare_folder
from test_export import TINY, TRAIN_YAML, make_tiny_run, run_script
from speechbrain_ext.embeddings import speaker_means
from speechbrain_ext.metrics import eer, interval_text
from speechbrain_ext.manifest import (ManifestRow, read_manifest, read_scores, read_trials, write_manifest,
                                      write_trials)
from speechbrain_ext.model_folder import load_extractor

ROOT = Path(__file__).resolve().parents[1]
CONTRACT = {"eer", "min_dcf_0.01", "min_dcf_0.05", "num_trials"}


def write_corpus(folder: Path) -> None:
    """5 speakers x 5 files of 1.1-2.4 s: a speaker-specific harmonic tone plus noise."""
    rng = np.random.default_rng(0)
    for spk in range(5):
        f0 = 110 + 40 * spk
        for utt in range(5):
            n = int(16000 * rng.uniform(1.1, 2.4))
            t = np.arange(n) / 16000
            tone = sum(np.sin(2 * np.pi * f0 * h * t) / h for h in range(1, 6))
            signal = 0.05 * tone + 0.02 * rng.standard_normal(n)
            path = folder / f"spk{spk}" / f"u{utt}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, signal.astype("float32"), 16000)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(save folder, prepared folder, shared embedding cache)."""
    tmp = tmp_path_factory.mktemp("evaluate")
    write_corpus(tmp / "data")
    prepare_folder(str(tmp / "data"), str(tmp / "prep"), num_test_speakers=2, enroll_utts=2,
                   test_durations=(1.0, 3.0), min_duration=0, max_duration=0, num_workers=1)
    return make_tiny_run(tmp), tmp / "prep", tmp / "cache"


def evaluate(setup, out: Path, capsys, prep: Path = None, *extra):
    """recipes/evaluate.py given the save folder only: the run's own hyperparams.yaml has the architecture."""
    save, default_prep, cache = setup
    argv = [ROOT / "hparams" / "eval_demo.yaml", f"--model_folder={save}", f"--prep_folder={prep or default_prep}",
            f"--output_folder={out}", f"--cache_folder={cache}", "--min_target_trials=2", *extra]
    return run_script("evaluate", argv, capsys)


def test_end_to_end(setup, tmp_path, capsys, caplog):
    status, out, err = evaluate(setup, tmp_path / "eval", capsys)
    assert status == 0, err
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert list(results) == ["1s", "1s+asnorm", "full", "full+asnorm"]  # no test file reaches 3 s
    assert "trials_3s.txt is empty" in caplog.text
    for cond, metrics in results.items():
        assert CONTRACT <= set(metrics) and 0 <= metrics["eer"] <= 1 and metrics["num_trials"] > 0
    threshold = json.loads((tmp_path / "eval" / "threshold.json").read_text())
    assert results["full"]["threshold"] == threshold["threshold"] and "far_at_threshold" in results["1s"]
    assert threshold["dev_far"] <= 0.01  # FAR target on the calibration list (= full here: no dev split)
    n_full = results["full"]["num_trials"]
    lines = (tmp_path / "eval" / "scores.txt").read_text().splitlines()
    assert len(lines) == n_full and lines[0].split()[3] in ("target", "nontarget")
    # the reported EER is that of the written scores, by SpeechBrain's own (independent, quadratic) EER
    from speechbrain.utils.metric_stats import EER

    scored = [(float(line.split()[2]), line.split()[3] == "target") for line in lines]
    positive = torch.tensor([s for s, target in scored if target])
    negative = torch.tensor([s for s, target in scored if not target])
    step = 1 / min(len(positive), len(negative))  # the two interpolate within one operating-point step
    assert abs(results["full"]["eer"] - EER(positive, negative)[0]) <= step
    assert (tmp_path / "eval" / "scores_1s+asnorm.txt").is_file()
    for png in ("det.png", "score_hist.png"):
        assert (tmp_path / "eval" / png).read_bytes()[:4] == b"\x89PNG"
    assert "| full+asnorm |" in out and "| full+asnorm |" in (tmp_path / "eval" / "results.md").read_text()
    assert len(list(setup[2].glob("*.pt"))) == 3  # enroll, test, cohort cached


def bad_prep(setup, tmp_path, name: str, text: str) -> Path:
    prep = tmp_path / "prep"
    shutil.copytree(setup[1], prep)
    (prep / name).write_text(text)
    return prep


@pytest.mark.parametrize("name, text, message", [
    ("trials.txt", "{enroll} no_such_utt target\n", "test id 'no_such_utt' is not in"),
    ("trials.txt", "", "trials.txt"),
])
def test_bad_trial_lists(setup, tmp_path, capsys, name, text, message):
    enroll = (setup[1] / "trials.txt").read_text().split()[0]
    prep = bad_prep(setup, tmp_path, name, text.format(enroll=enroll))
    status, _, err = evaluate(setup, tmp_path / "eval", capsys, prep)
    assert status == 1 and err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_one_class_condition_is_skipped_and_the_rest_evaluated(setup, tmp_path, capsys, caplog):
    prep = setup[1]
    targets = [line for line in (prep / "trials_1s.txt").read_text().splitlines() if line.endswith(" target")]
    status, _, err = evaluate(setup, tmp_path / "eval", capsys,
                              bad_prep(setup, tmp_path, "trials_1s.txt", "\n".join(targets) + "\n"))
    assert status == 0, err
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert "1s" not in results and "full" in results
    assert f"condition 1s skipped: its {len(targets)} trial(s) are all target" in caplog.text


def test_confidence_intervals_bracket_the_estimate(setup, tmp_path, capsys):
    status, out, err = evaluate(setup, tmp_path / "eval", capsys)
    assert status == 0, err
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    for metrics in results.values():
        for name in ("eer", "min_dcf_0.01", "min_dcf_0.05"):
            low, high = metrics[f"{name}_ci"]
            assert low <= metrics[name] + 1e-9 and metrics[name] <= high + 1e-9
    assert "[" in out.split("| full |")[1].split("\n")[0]  # the table prints the interval


def test_calibrates_on_the_dev_split(tmp_path, capsys, caplog):
    """With a dev split, the threshold comes from dev speakers, not from the reported list."""
    write_corpus(tmp_path / "data")
    prepare_folder(str(tmp_path / "data"), str(tmp_path / "prep"), num_test_speakers=2, num_dev_speakers=2,
                   enroll_utts=2, test_durations=(1.0,), min_duration=0, max_duration=0, num_workers=1)
    save = make_tiny_run(tmp_path)
    status, _, err = evaluate((save, tmp_path / "prep", tmp_path / "cache"), tmp_path / "eval", capsys)
    assert status == 0, err
    threshold = json.loads((tmp_path / "eval" / "threshold.json").read_text())
    dev_trials = (tmp_path / "prep" / "dev" / "trials.txt").read_text().splitlines()
    assert threshold["calibration_trials"] == "dev/trials.txt"
    assert threshold["num_calibration_trials"] == len(dev_trials)
    assert "not a measurement" not in caplog.text
    status, _, err = evaluate((save, tmp_path / "prep", tmp_path / "cache"), tmp_path / "eval2", capsys,
                              None, "--calibration_folder=" + str(tmp_path / "prep"))
    assert status == 0 and "not a measurement" in caplog.text


def test_threshold_states_its_score_target_and_measured_far(setup, tmp_path, capsys):
    """deploy_score=asnorm: threshold.json says so, with the target and the test FAR, and cohort.pt holds the
    training speakers' voiceprints stamped with the model's fingerprint."""
    status, out, err = evaluate(setup, tmp_path / "eval", capsys, None, "--deploy_score=asnorm")
    assert status == 0, err
    threshold = json.loads((tmp_path / "eval" / "threshold.json").read_text())
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert threshold["score"] == "asnorm" and threshold["cohort_file"] == "cohort.pt"
    assert threshold["target_far"] == 0.01 and threshold["test_far"] == results["full+asnorm"]["far_at_threshold"]
    assert "far_at_threshold" not in results["full"]  # the threshold is not for raw cosine scores
    measured = interval_text(threshold["test_far"], threshold["test_far_ci"], 100)
    assert f"target FAR 1%, measured test FAR {measured}%" in out
    low, high = threshold["test_far_ci"]
    assert low <= threshold["test_far"] <= high
    cohort = torch.load(tmp_path / "eval" / "cohort.pt")
    model = load_extractor(TRAIN_YAML, setup[0], overrides=TINY)
    assert cohort["fingerprint"] == model.fingerprint() and cohort["top_n"] == 100
    _, voiceprints, _ = speaker_means(setup[1] / "train.csv", model, max_speakers=1000, utts_per_speaker=5)
    assert voiceprints.shape == (3, TINY["emb_dim"]) and torch.allclose(cohort["embeddings"], voiceprints, atol=1e-6)


def test_auto_deploys_the_score_with_the_lower_dev_act_dcf(setup, tmp_path, capsys):
    status, _, err = evaluate(setup, tmp_path / "eval", capsys)
    assert status == 0, err
    threshold = json.loads((tmp_path / "eval" / "threshold.json").read_text())
    by_kind = {}
    for kind in ("cosine", "asnorm"):
        status, _, err = evaluate(setup, tmp_path / kind, capsys, None, f"--deploy_score={kind}")
        by_kind[kind] = json.loads((tmp_path / kind / "threshold.json").read_text())["dev_act_dcf"]
    assert threshold["dev_act_dcf"] == min(by_kind.values())
    assert threshold["score"] == min(by_kind, key=lambda k: (by_kind[k], k != "cosine"))


@pytest.mark.parametrize("extra, message", [
    (["--deploy_score=asnorm", "--cohort_csv=null"], "deploy_score must be auto, cosine or asnorm (asnorm needs a"),
    (["--deploy_score=plda"], "got 'plda'"),
])
def test_bad_deploy_score(setup, tmp_path, capsys, extra, message):
    status, _, err = evaluate(setup, tmp_path / "eval", capsys, None, *extra)
    assert status == 1 and err.count("\n") == 1 and message in err


def test_one_class_calibration_trials(setup, tmp_path, capsys, caplog):
    """A dev list of target trials only cannot place a threshold: one line naming it, no threshold.json."""
    prep = bad_prep(setup, tmp_path, "trials.txt", (setup[1] / "trials.txt").read_text())
    dev = prep / "dev"
    dev.mkdir(exist_ok=True)
    for name in ("enroll.csv", "test.csv"):
        shutil.copy(prep / name, dev / name)
    targets = [line for line in (prep / "trials.txt").read_text().splitlines() if line.endswith(" target")]
    (dev / "trials.txt").write_text("\n".join(targets) + "\n")
    status, _, err = evaluate(setup, tmp_path / "eval", capsys, prep)
    assert status == 0, err  # the conditions are still reported
    assert f"calibration trials {dev / 'trials.txt'}: its {len(targets)} trial(s) are all target: no threshold.json" \
        in caplog.text
    assert not (tmp_path / "eval" / "threshold.json").exists()


def test_separable_trials_score_zero_eer_and_scores_txt_matches_results(setup, tmp_path, capsys):
    """Each test row is its speaker's enrolment audio itself (enrolment by the joined audio): target scores are
    1, non-target ones lower, so EER and minDCF must be 0, and the EER of scores.txt must be results.json's.
    Labels flipped, or scores out of trial order, would show here. (Last in the file: it adds to the cache.)"""
    prep = tmp_path / "prep"
    shutil.copytree(setup[1], prep)
    for crops in prep.glob("trials_*.txt"):
        crops.unlink()
    enroll = read_manifest(prep / "enroll.csv")
    write_manifest(prep / "test.csv", [ManifestRow(f"{e.spk_id}/same", e.wav, e.start, e.stop, e.spk_id)
                                       for e in enroll])
    write_trials(prep / "trials.txt", [(e.id, f"{t.spk_id}/same", int(e is t)) for e in enroll for t in enroll])
    status, _, err = evaluate(setup, tmp_path / "eval", capsys, prep, "--enroll_mode=concat")
    assert status == 0, err
    full = json.loads((tmp_path / "eval" / "results.json").read_text())["full"]
    assert full["eer"] == 0 and full["min_dcf_0.01"] == 0 and full["num_trials"] == len(enroll) ** 2
    trials, scores = read_scores(tmp_path / "eval" / "scores.txt")
    assert trials == read_trials(prep / "trials.txt")
    assert all(abs(score - 1) < 1e-5 for (_, _, label), score in zip(trials, scores) if label)
    assert eer(scores, [label for _, _, label in trials])[0] == full["eer"]
