"""Tests for speechbrain_ext.metrics: brute force, hand-computed cases, SpeechBrain."""
import numpy as np
import pytest
import torch
from speechbrain.utils.metric_stats import EER as sb_eer
from speechbrain.utils.metric_stats import minDCF as sb_min_dcf

from speechbrain_ext.metrics import det_curve, eer, error_rates, min_dcf, threshold_at_far


def random_trials(seed, n=300, target_fraction=0.3, decimals=None):
    """Gaussian scores (targets shifted by 1.5); rounding makes ties."""
    rng = np.random.default_rng(seed)
    labels = (rng.random(n) < target_fraction).astype(int)
    labels[:2] = [0, 1]
    scores = rng.normal(1.5 * labels, 1.0)
    if decimals is not None:
        scores = scores.round(decimals)
    return scores, labels


def brute_rates(scores, labels, t):
    """FAR, FRR at threshold t by counting (accept score >= t)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    far = np.count_nonzero(scores[labels == 0] >= t) / np.count_nonzero(labels == 0)
    frr = np.count_nonzero(scores[labels == 1] < t) / np.count_nonzero(labels == 1)
    return far, frr


def brute_points(scores, labels):
    """(threshold, FAR, FRR) for every distinct score and +inf."""
    return [(t, *brute_rates(scores, labels, t)) for t in sorted(set(scores.tolist())) + [np.inf]]


def brute_eer(scores, labels):
    """Intersect the DET polyline (FAR, FRR) with the diagonal FRR = FAR."""
    points = brute_points(scores, labels)
    for (t0, far0, frr0), (t1, far1, frr1) in zip(points, points[1:]):
        if frr0 - far0 < 0 <= frr1 - far1:
            # solve far0 + a (far1 - far0) = frr0 + a (frr1 - frr0) for a
            a = (far0 - frr0) / ((frr1 - frr0) - (far1 - far0))
            return far0 + a * (far1 - far0), (t0 if np.isinf(t1) else t0 + a * (t1 - t0))
    raise AssertionError("FRR - FAR never changes sign")


def brute_min_dcf(scores, labels, p, c_miss=1.0, c_fa=1.0):
    """Minimum over every threshold, including midpoints and +-inf (normalised)."""
    distinct = np.unique(scores)
    candidates = np.r_[-np.inf, distinct, (distinct[1:] + distinct[:-1]) / 2, np.inf]
    costs = []
    for t in candidates:
        far, frr = brute_rates(scores, labels, t)
        costs.append(c_miss * p * frr + c_fa * (1 - p) * far)
    return min(costs) / min(c_miss * p, c_fa * (1 - p))


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("decimals", [None, 1])
def test_eer_matches_brute_force(seed, decimals):
    scores, labels = random_trials(seed, decimals=decimals)
    rate, threshold = eer(scores, labels)
    expected_rate, expected_threshold = brute_eer(scores, labels)
    assert rate == pytest.approx(expected_rate, abs=1e-12)
    assert threshold == pytest.approx(expected_threshold, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("decimals", [None, 1])
@pytest.mark.parametrize("p_target,c_miss,c_fa", [(0.01, 1, 1), (0.05, 1, 1), (0.3, 2, 0.5), (0.7, 1, 1)])
def test_min_dcf_matches_brute_force(seed, decimals, p_target, c_miss, c_fa):
    scores, labels = random_trials(seed, decimals=decimals)
    value, threshold = min_dcf(scores, labels, p_target, c_miss, c_fa)
    assert value == pytest.approx(brute_min_dcf(scores, labels, p_target, c_miss, c_fa), abs=1e-12)
    # the returned threshold reaches the returned cost (accept score >= threshold)
    far, frr = brute_rates(scores, labels, threshold)
    normaliser = min(c_miss * p_target, c_fa * (1 - p_target))
    assert (c_miss * p_target * frr + c_fa * (1 - p_target) * far) / normaliser == pytest.approx(value, abs=1e-12)


@pytest.mark.parametrize("decimals", [None, 1])
def test_det_curve_matches_brute_force(decimals):
    scores, labels = random_trials(7, n=100, decimals=decimals)
    fpr, fnr, thresholds = det_curve(scores, labels)
    points = np.array(brute_points(scores, labels))
    np.testing.assert_array_equal(thresholds, points[:, 0])
    np.testing.assert_allclose(fpr, points[:, 1], atol=1e-15)
    np.testing.assert_allclose(fnr, points[:, 2], atol=1e-15)


def test_eer_hand_computed_interpolation():
    # targets 0.4, 0.5, 0.9; non-targets 0.1, 0.6
    # t = 0.1: FRR 0,   FAR 1    d = -1
    # t = 0.4: FRR 0,   FAR 1/2  d = -1/2
    # t = 0.5: FRR 1/3, FAR 1/2  d = -1/6
    # t = 0.6: FRR 2/3, FAR 1/2  d = +1/6   <- first d >= 0
    # a = (-1/6) / (-1/6 - 1/6) = 1/2; EER = 1/3 + (2/3 - 1/3)/2 = 1/2
    # threshold = 0.5 + (0.6 - 0.5)/2 = 0.55
    rate, threshold = eer([0.4, 0.5, 0.9, 0.1, 0.6], [1, 1, 1, 0, 0])
    assert rate == pytest.approx(0.5)
    assert threshold == pytest.approx(0.55)


def test_eer_hand_computed_uneven_crossing():
    # targets 0.2, 0.7, 0.8, 0.9; non-targets 0.1, 0.3, 0.75
    # t = 0.1: FRR 0,   FAR 1    d = -1
    # t = 0.2: FRR 0,   FAR 2/3  d = -2/3
    # t = 0.3: FRR 1/4, FAR 2/3  d = -5/12
    # t = 0.7: FRR 1/4, FAR 1/3  d = -1/12
    # t = 0.75: FRR 1/2, FAR 1/3 d = +1/6
    # a = (-1/12) / (-1/12 - 1/6) = 1/3; EER = 1/4 + (1/2 - 1/4)/3 = 1/3
    # threshold = 0.7 + (0.75 - 0.7)/3 = 0.71666...
    rate, threshold = eer([0.2, 0.7, 0.8, 0.9, 0.1, 0.3, 0.75], [1, 1, 1, 1, 0, 0, 0])
    assert rate == pytest.approx(1 / 3)
    assert threshold == pytest.approx(0.7 + 0.05 / 3)


def test_eer_perfect_and_inverted_systems():
    # perfect: t = 0.5 gives FRR 0, FAR 0 (d = 0 at the first target score)
    assert eer([0.1, 0.2, 0.5, 0.9], [0, 0, 1, 1]) == pytest.approx((0.0, 0.5))
    # inverted: every non-target above every target, EER 1
    assert eer([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1])[0] == pytest.approx(1.0)


def test_eer_crossing_at_reject_all_point():
    # target 1; non-targets 0, 1 (tie at the top)
    # t = 0: FRR 0, FAR 1; t = 1: FRR 0, FAR 1/2 (d = -1/2); t = inf: FRR 1, FAR 0 (d = 1)
    # a = 1/3, EER = 0 + 1/3 = 1/3; threshold is the last finite one, 1
    assert eer([1.0, 0.0, 1.0], [1, 0, 0]) == pytest.approx((1 / 3, 1.0))


def test_min_dcf_hand_computed():
    # targets 0.4, 0.5, 0.9; non-targets 0.1, 0.6; p = 0.1, normaliser 0.1
    # t = 0.1: 0.9*1           = 0.9
    # t = 0.4: 0.9*1/2         = 0.45
    # t = 0.5: 0.1/3 + 0.45    = 0.4833
    # t = 0.6: 0.1*2/3 + 0.45  = 0.5167
    # t = 0.9: 0.1*2/3         = 0.0667  <- minimum, 0.0667 / 0.1 = 2/3
    # t = inf: 0.1
    value, threshold = min_dcf([0.4, 0.5, 0.9, 0.1, 0.6], [1, 1, 1, 0, 0], p_target=0.1)
    assert value == pytest.approx(2 / 3)
    assert threshold == 0.9


def test_min_dcf_reject_all_is_one_with_inf_threshold():
    # inverted system: best is to reject everything, cost p*1 / p = 1
    assert min_dcf([0.9, 0.8, 0.1, 0.2], [0, 0, 1, 1]) == (1.0, np.inf)


def test_min_dcf_costs_scale_normaliser():
    # doubling both costs changes neither the normalised value nor the threshold
    scores, labels = random_trials(3)
    assert min_dcf(scores, labels, 0.05, 2, 2) == pytest.approx(min_dcf(scores, labels, 0.05))


@pytest.mark.parametrize("seed", range(3))
def test_eer_agrees_with_speechbrain(seed):
    scores, labels = random_trials(seed, n=3000, target_fraction=0.2)
    positive = torch.tensor(scores[labels == 1], dtype=torch.float32)
    negative = torch.tensor(scores[labels == 0], dtype=torch.float32)
    sb_rate, _ = sb_eer(positive, negative)
    # SpeechBrain returns (FAR + FRR) / 2 at its best threshold, without
    # interpolation: it can be off by up to one step of either rate.
    step = 1 / min(len(positive), len(negative))
    assert eer(scores, labels)[0] == pytest.approx(sb_rate, abs=step)


@pytest.mark.parametrize("seed", range(2))
@pytest.mark.parametrize("p_target", [0.01, 0.05])
def test_min_dcf_agrees_with_speechbrain_normalised(seed, p_target):
    scores, labels = random_trials(seed, n=2000, target_fraction=0.2)
    scores = scores.astype(np.float32)  # same values on both sides
    positive = torch.from_numpy(scores[labels == 1])
    negative = torch.from_numpy(scores[labels == 0])
    sb_value, sb_threshold = sb_min_dcf(positive, negative, p_target=p_target)
    value, threshold = min_dcf(scores, labels, p_target=p_target)
    assert value == pytest.approx(sb_value / min(p_target, 1 - p_target), abs=1e-5)
    # SpeechBrain accepts score > threshold; same cost at its operating point
    far = (negative > sb_threshold).float().mean().item()
    frr = (positive <= sb_threshold).float().mean().item()
    assert value == pytest.approx((p_target * frr + (1 - p_target) * far) / p_target, abs=1e-5)


def test_threshold_convention_score_equal_to_threshold_is_accepted():
    scores = [0.2, 0.5, 0.5, 0.8]
    labels = [0, 0, 1, 1]
    assert error_rates(scores, labels, 0.5) == (0.5, 0.0)
    assert error_rates(scores, labels, np.nextafter(0.5, 1)) == (0.0, 0.5)
    assert error_rates(scores, labels, -np.inf) == (1.0, 0.0)
    assert error_rates(scores, labels, np.inf) == (0.0, 1.0)


@pytest.mark.parametrize("target_far", [0.0, 0.01, 0.1, 0.37, 1.0])
def test_threshold_at_far_is_lowest_meeting_target(target_far):
    scores, labels = random_trials(11, n=400, decimals=2)
    threshold = threshold_at_far(scores, labels, far=target_far)
    far, _ = error_rates(scores, labels, threshold)
    assert far <= target_far
    lower = scores[scores < threshold]
    if len(lower):  # the next lower operating point misses the target
        assert error_rates(scores, labels, lower.max())[0] > target_far


def test_threshold_calibration_dev_to_test():
    dev_scores, dev_labels = random_trials(1, n=20000, target_fraction=0.1)
    test_scores, test_labels = random_trials(2, n=20000, target_fraction=0.1)
    threshold = threshold_at_far(dev_scores, dev_labels, far=0.01)
    far, frr = error_rates(test_scores, test_labels, threshold)
    assert far == pytest.approx(0.01, abs=0.005)  # same distribution: close to the target
    # targets ~ N(1.5, 1), non-targets ~ N(0, 1): FRR at 1 % FAR = Phi(2.326 - 1.5) = 0.796
    assert frr == pytest.approx(0.796, abs=0.03)
    rate, eer_threshold = eer(dev_scores, dev_labels)
    test_far, test_frr = error_rates(test_scores, test_labels, eer_threshold)
    assert test_far == pytest.approx(rate, abs=0.02) and test_frr == pytest.approx(rate, abs=0.02)


def test_eer_threshold_sits_between_its_operating_points():
    # from test_eer_hand_computed_interpolation: 0.55 accepts 0.6 and 0.9
    scores, labels = [0.4, 0.5, 0.9, 0.1, 0.6], [1, 1, 1, 0, 0]
    _, threshold = eer(scores, labels)
    assert error_rates(scores, labels, threshold) == pytest.approx((0.5, 2 / 3))


def test_torch_and_list_inputs_equal_numpy():
    scores, labels = random_trials(5)
    expected = (eer(scores, labels), min_dcf(scores, labels))
    as_torch = (torch.from_numpy(scores), torch.from_numpy(labels).bool())
    assert (eer(*as_torch), min_dcf(*as_torch)) == expected
    as_float = (scores.tolist(), labels.astype(float).tolist())
    assert (eer(*as_float), min_dcf(*as_float)) == expected


BAD_INPUTS = [
    ([], [], "empty"),
    ([0.1, 0.2], [1, 1], "both classes"),
    ([0.1, 0.2], [0, 0], "both classes"),
    ([0.1, np.nan, 0.3], [0, 1, 1], "NaN/inf"),
    ([0.1, np.inf, 0.3], [0, 1, 1], "NaN/inf"),
    (torch.tensor([0.1, float("nan")]), torch.tensor([0, 1]), "NaN/inf"),
    ([0.1, 0.2, 0.3], [0, 1], "differ in length"),
    ([0.1, 0.2], [0, 2], "labels must be 0"),
    ([0.1, 0.2], [-1, 1], "labels must be 0"),
    ([0.1, 0.2], [0, 0.5], "labels must be 0"),
    ([0.1, 0.2], ["target", "nontarget"], "labels must be 0/1"),
    (["a", "b"], [0, 1], "real numbers"),
    ([[0.1, 0.2]], [[0, 1]], "1-D"),
]


@pytest.mark.parametrize("scores,labels,message", BAD_INPUTS)
@pytest.mark.parametrize(
    "metric",
    [eer, min_dcf, det_curve, threshold_at_far, lambda s, l: error_rates(s, l, 0.0)],
    ids=["eer", "min_dcf", "det_curve", "threshold_at_far", "error_rates"],
)
def test_bad_input_raises_one_line(metric, scores, labels, message):
    with pytest.raises(ValueError, match=message) as info:
        metric(scores, labels)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda s, l: min_dcf(s, l, p_target=0.0), "p_target"),
        (lambda s, l: min_dcf(s, l, p_target=1.0), "p_target"),
        (lambda s, l: min_dcf(s, l, c_miss=0), "c_miss"),
        (lambda s, l: threshold_at_far(s, l, far=1.5), "far must be"),
        (lambda s, l: error_rates(s, l, float("nan")), "threshold is NaN"),
    ],
)
def test_bad_parameters_raise(call, message):
    with pytest.raises(ValueError, match=message):
        call([0.1, 0.9], [0, 1])
