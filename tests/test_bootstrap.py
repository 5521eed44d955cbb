"""Speaker-level bootstrap confidence intervals of EER and minDCF (speechbrain_ext.metrics)."""
import numpy as np
import pytest
from scipy.stats import norm

from speechbrain_ext.metrics import (bootstrap_ci, bootstrap_values, eer, min_dcf, paired_bootstrap_ci,
                                     speaker_weights)


def synthetic_trials(rng, speakers=30, targets=10, nontargets=60, shift=0.0):
    """Scores N(+1 + u_s, 1) for targets and N(-1 + u_s, 1) for non-targets.

    u_s ~ N(0, shift) is a per-speaker offset that correlates a speaker's
    trials; with shift 0 the population EER is Phi(-1).
    """
    labels, scores, groups = [], [], []
    for spk in range(speakers):
        offset = rng.normal(0, shift)
        labels += [1] * targets + [0] * nontargets
        scores += list(rng.normal(1 + offset, 1, targets)) + list(rng.normal(-1 + offset, 1, nontargets))
        groups += [spk] * (targets + nontargets)
    return np.array(scores), np.array(labels), np.array(groups)


def test_ci_covers_the_true_eer_in_at_least_90_percent_of_repeats():
    rng = np.random.default_rng(0)
    truth = norm.cdf(-1.0)  # two unit Gaussians at -1 and +1 cross at 0
    repeats, covered = 60, 0
    for r in range(repeats):
        scores, labels, groups = synthetic_trials(rng)
        low, high = bootstrap_ci(scores, labels, groups, num_resamples=200, seed=r)["eer"]
        covered += low <= truth <= high
    assert covered / repeats >= 0.9


def test_speaker_correlation_widens_the_interval():
    """Trials of one speaker are correlated: resampling speakers must see it (a trial bootstrap would not)."""
    rng = np.random.default_rng(1)
    independent = bootstrap_ci(*synthetic_trials(rng, shift=0.0), num_resamples=300)["eer"]
    correlated = bootstrap_ci(*synthetic_trials(rng, shift=1.0), num_resamples=300)["eer"]
    assert correlated[1] - correlated[0] > 1.5 * (independent[1] - independent[0])


def test_paired_ci_of_a_system_against_itself_is_zero():
    scores, labels, groups = synthetic_trials(np.random.default_rng(2))
    for low, high in paired_bootstrap_ci(scores, scores, labels, groups, num_resamples=100).values():
        assert low == 0.0 and high == 0.0


def test_paired_ci_finds_a_real_difference_and_its_sign():
    rng = np.random.default_rng(3)
    scores, labels, groups = synthetic_trials(rng)
    better = scores + 0.8 * (2 * labels - 1)  # targets up, non-targets down
    low, high = paired_bootstrap_ci(better, scores, labels, groups, num_resamples=200)["eer"]
    assert high < 0
    point = eer(better, labels)[0] - eer(scores, labels)[0]
    assert low <= point <= high


def test_resamples_weigh_whole_speakers():
    groups = np.repeat(["a", "b", "c"], [2, 3, 4])
    weights = list(speaker_weights(groups, 20, seed=0))
    for row in weights:
        for spk in "abc":
            assert len(set(row[groups == spk])) == 1  # a speaker's trials are drawn together
        assert set(row) <= {0, 1, 2, 3} and row[[0, 2, 5]].sum() == 3  # 3 draws of 3 speakers


def test_weighted_metrics_equal_metrics_on_the_repeated_trials():
    """A resample's weighted EER/minDCF equal those of the trials actually repeated."""
    rng = np.random.default_rng(5)
    scores, labels, groups = synthetic_trials(rng, speakers=6, targets=5, nontargets=20)
    weights = list(speaker_weights(groups, 3, seed=1))
    values = bootstrap_values(scores, None, labels, groups, num_resamples=3, seed=1)
    for r in range(3):
        picked = np.repeat(np.arange(len(scores)), weights[r].astype(int))
        assert np.isclose(values["eer"][r], eer(scores[picked], labels[picked])[0])
        assert np.isclose(values["min_dcf_0.01"][r], min_dcf(scores[picked], labels[picked], 0.01)[0])


def test_bootstrap_values_align_across_systems():
    """Same groups and seed: resample r is the same trials, so values can be combined per resample."""
    scores, labels, groups = synthetic_trials(np.random.default_rng(4))
    a = bootstrap_values(scores, None, labels, groups, num_resamples=50, seed=7)["eer"]
    b = bootstrap_values(scores + 0.3, None, labels, groups, num_resamples=50, seed=7)["eer"]
    diff = bootstrap_values(scores, scores + 0.3, labels, groups, num_resamples=50, seed=7)["eer"]
    assert np.allclose(a - b, diff)


def test_fewer_than_two_speakers_is_one_line():
    with pytest.raises(ValueError, match="at least 2 test speakers, got 1"):
        bootstrap_ci([0.1, 0.9], [0, 1], ["a", "a"])


def test_groups_must_match_the_trials():
    with pytest.raises(ValueError, match="groups hold 3 speakers for 2 trials"):
        bootstrap_ci([0.1, 0.9], [0, 1], ["a", "b", "c"])
