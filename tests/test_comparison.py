"""Seed-averaged intervals and paired differences over evaluation folders (speechbrain_ext.comparison)."""
import csv

import numpy as np
import pytest

from speechbrain_ext.comparison import seed_result, summarise
from speechbrain_ext.manifest import write_scores


def write_eval(folder, trials, scores):
    folder.mkdir(parents=True, exist_ok=True)
    write_scores(folder / "scores_1s.txt", trials, scores)
    return folder


@pytest.fixture
def split(tmp_path):
    """20 test speakers x 3 test utterances, all pairs against 20 enrolments; two systems."""
    rng = np.random.default_rng(0)
    tests = [(f"s{k}/u{j}", f"s{k}") for k in range(20) for j in range(3)]
    with open(tmp_path / "test.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav", "start", "stop", "spk_id"])
        writer.writerows([t, 1.0, "x.wav", 0, 16000, spk] for t, spk in tests)
    trials = [(f"s{e}-enroll", t, int(spk == f"s{e}")) for e in range(20) for t, spk in tests]
    labels = np.array([y for _, _, y in trials])
    noise = rng.normal(0, 1, len(trials))
    weak = write_eval(tmp_path / "weak", trials, labels * 1.0 + noise)
    strong = write_eval(tmp_path / "strong", trials, labels * 2.5 + noise)
    return tmp_path / "test.csv", weak, strong


def test_interval_brackets_the_mean_and_self_difference_is_zero(split):
    test_csv, weak, _ = split
    seeds = [seed_result(weak, "1s", test_csv, 7, 200)] * 2
    summary = summarise(seeds, seeds)
    low, high = summary["eer_ci"]
    assert low <= summary["eer_mean"] <= high and high - low > 0
    assert summary["diff_vs_baseline"]["eer"] == 0 and summary["diff_vs_baseline"]["eer_ci"] == [0.0, 0.0]


def test_paired_difference_of_a_better_system_excludes_zero(split):
    test_csv, weak, strong = split
    weak_r, strong_r = (seed_result(f, "1s", test_csv, 7, 300) for f in (weak, strong))
    diff = summarise([strong_r], [weak_r])["diff_vs_baseline"]
    assert diff["eer"] < 0 and diff["eer_ci"][1] < 0
    assert len(list(weak.glob("bootstrap_1s_7_300_*.npz"))) == 1  # cached for the next invocation


def test_a_redone_evaluation_does_not_reuse_old_bootstrap_values(split):
    test_csv, weak, strong = split
    before = seed_result(weak, "1s", test_csv, 7, 100)
    (weak / "scores_1s.txt").write_bytes((strong / "scores_1s.txt").read_bytes())  # evaluation re-done
    after = seed_result(weak, "1s", test_csv, 7, 100)
    assert after.point["eer"] < before.point["eer"]
    assert np.nanmean(after.values["eer"]) < np.nanmean(before.values["eer"])


def test_different_trials_cannot_be_paired(split, tmp_path):
    test_csv, weak, _ = split
    trials, = [seed_result(weak, "1s", test_csv, 7, 50).trials]
    other = write_eval(tmp_path / "other", trials[1:], np.linspace(0, 1, len(trials) - 1))
    with pytest.raises(ValueError, match="same trials"):
        summarise([seed_result(other, "1s", test_csv, 7, 50)], [seed_result(weak, "1s", test_csv, 7, 50)])


def test_unknown_test_id_is_one_line(split, tmp_path):
    test_csv, _, _ = split
    bad = write_eval(tmp_path / "bad", [("s0-enroll", "nobody/u0", 1), ("s1-enroll", "s0/u0", 0)], [0.9, 0.1])
    with pytest.raises(ValueError, match="test id 'nobody/u0' is not in"):
        seed_result(bad, "1s", test_csv, 7, 50)
