"""speechbrain_ext.calibration and the calibration metrics: known LLRs recovered, actDCF >= minDCF, Cllr,
bad calibration sets, threshold.json formats (old, foreign model), and the Verifier applying the same map."""
import json
import math
import shutil

import numpy as np
import pytest

from speechbrain_ext.builder import ModelError
from speechbrain_ext.calibration import (Calibration, CalibrationError, LinearLLR, calibration_of, fit_llr,
                                         model_fingerprint)
from speechbrain_ext.metrics import (act_dcf, bayes_threshold, bootstrap_ci, cllr, min_cllr, min_dcf, pav_llrs,
                                     system_metrics)

pytestmark = pytest.mark.usefixtures("single_thread")


def gaussian_trials(rng, n=20000, delta=2.0, k=0.0, durations=(1.0,)):
    """Non-target scores N(m(q), 1), target N(m(q) + delta, 1), m(q) = k q, q = log(duration): the true llr is
    delta s - delta^2/2 - delta k q, i.e. a = delta, b = -delta^2/2, c = -delta k."""
    labels = np.r_[np.ones(n // 2), np.zeros(n // 2)].astype(int)
    seconds = rng.choice(durations, n)
    q = np.log(seconds)
    scores = rng.normal(k * q + delta * labels, 1.0)
    truth = delta * scores - delta ** 2 / 2 - delta * k * q
    return scores, labels, seconds, truth


@pytest.mark.parametrize("prior", [0.5, 0.01])
def test_logistic_calibration_recovers_known_llrs(prior):
    scores, labels, _, truth = gaussian_trials(np.random.default_rng(0))
    fitted = fit_llr(scores, labels, prior=prior)
    assert fitted.a == pytest.approx(2.0, abs=0.15) and fitted.b == pytest.approx(-2.0, abs=0.15)
    central = np.abs(truth) < 5
    assert np.abs(fitted(scores)[central] - truth[central]).max() < 0.5


def test_duration_term_recovered_and_shares_one_threshold():
    scores, labels, seconds, truth = gaussian_trials(np.random.default_rng(1), k=0.5, durations=(1.0, 3.0))
    fitted = fit_llr(scores, labels, seconds, "duration", prior=0.5)
    assert fitted.c == pytest.approx(-1.0, abs=0.15) and fitted.a == pytest.approx(2.0, abs=0.15)
    assert np.abs(fitted(scores, seconds) - truth)[np.abs(truth) < 5].max() < 0.5
    plain = fit_llr(scores, labels, prior=0.5)  # without the quality measure: worse calibrated at each duration
    for d in (1.0, 3.0):
        at = seconds == d
        assert cllr(fitted(scores[at], seconds[at]), labels[at]) < cllr(plain(scores[at]), labels[at]) - 0.01


def test_act_dcf_never_below_min_dcf_and_equal_when_calibrated_on_the_trials():
    rng = np.random.default_rng(2)
    for trial in range(20):
        scores, labels, _, _ = gaussian_trials(rng, n=400, delta=rng.uniform(0.5, 3))
        llrs = rng.uniform(0.2, 5) * scores + rng.normal(0, 3)  # any monotone, miscalibrated map
        for p in (0.01, 0.05, 0.3):
            assert act_dcf(llrs, labels, p) >= min_dcf(llrs, labels, p)[0] - 1e-12
            # PAV llrs are the best monotone calibration of these very trials: their Bayes decisions reach minDCF
            assert act_dcf(pav_llrs(scores, labels), labels, p) == pytest.approx(min_dcf(scores, labels, p)[0],
                                                                                 abs=1e-9)


def test_true_llrs_at_their_bayes_threshold_reach_min_dcf():
    scores, labels, _, truth = gaussian_trials(np.random.default_rng(3), n=200000)
    for p in (0.01, 0.05):
        assert act_dcf(truth, labels, p) == pytest.approx(min_dcf(truth, labels, p)[0], abs=0.02)


def test_cllr_of_calibrated_scores_below_shifted_ones_and_min_cllr_below_both():
    scores, labels, _, _ = gaussian_trials(np.random.default_rng(4))
    calibrated = fit_llr(scores, labels)(scores)
    for shift in (-2.0, -0.5, 0.5, 2.0):
        assert cllr(calibrated, labels) < cllr(calibrated + shift, labels)
    assert min_cllr(calibrated, labels) <= cllr(calibrated, labels)
    assert min_cllr(calibrated, labels) == pytest.approx(min_cllr(scores, labels))  # monotone: same minCllr
    assert cllr(np.zeros(len(labels)), labels) == pytest.approx(1.0)


def test_bootstrap_intervals_of_calibration_metrics_bracket_the_estimate():
    rng = np.random.default_rng(5)
    scores, labels, _, truth = gaussian_trials(rng, n=3000)
    groups = rng.integers(0, 30, len(scores))
    accepted = truth >= bayes_threshold(0.05)
    point = system_metrics(scores, labels, truth, {"deployed": accepted})
    cis = bootstrap_ci(scores, labels, groups, num_resamples=100, llrs=truth, decisions={"deployed": accepted})
    for name in ("act_dcf_0.01", "act_dcf_0.05", "cllr", "min_cllr", "far_deployed", "frr_deployed"):
        low, high = cis[name]
        assert low <= point[name] <= high and low < high, name


@pytest.mark.parametrize("labels, message", [
    ([1] * 60, "are all target"),
    ([0] * 60, "are all non-target"),
    ([1] * 49 + [0] * 100, "only 49 target trial(s), at least 50 needed"),
])
def test_bad_calibration_sets(labels, message):
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        fit_llr(np.linspace(0, 1, len(labels)), labels)


def test_decision_modes_and_score_threshold():
    cal = Calibration("llr", 0.3, LinearLLR(20.0, -10.0, 2.0, "duration"), p_target=0.01)
    scores, seconds = np.linspace(0, 1, 101), np.full(101, 2.0)
    llrs = 20 * scores - 10 + 2 * math.log(2.0)
    assert (cal.accept(scores, seconds) == (llrs >= math.log(99))).all()
    assert (cal.accept(scores, seconds) == (scores >= cal.score_threshold(seconds))).all()
    assert (cal.with_threshold(0.3).accept(scores, seconds) == (scores >= 0.3)).all()
    with pytest.raises(ValueError, match="mode llr needs"):
        Calibration("llr", 0.3)


def test_old_format_loads_in_far_mode_and_a_foreign_map_is_refused(tiny_model):
    from speechbrain_ext.inference import load_verifier

    model = load_verifier(tiny_model)
    old = calibration_of({"threshold": 0.7}, "threshold.json", model.mods)
    assert old.mode == "far" and old.threshold == 0.7 and old.llr_map is None
    block = Calibration("llr", 0.7, LinearLLR(10.0, -5.0)).block(model_fingerprint(model.mods), 0.01)
    assert calibration_of({"threshold": 0.7, "calibration": block}, "t.json", model.mods).mode == "llr"
    with pytest.raises(ModelError, match="t.json: made with another model"):
        calibration_of({"threshold": 0.7, "calibration": {**block, "fingerprint": "0" * 64}}, "t.json", model.mods)


def test_verifier_applies_the_folder_map(tiny_model, speaker_corpus, tmp_path):
    """An llr-mode threshold.json: the Verifier's llr is the map of its score and the claim's duration, to 1e-6,
    and accepts iff llr >= log(99); the CLI's --threshold falls back to far mode."""
    import soundfile as sf

    from speechbrain_ext.inference import load_verifier
    from speechbrain_ext.access.audit import ClaimPolicy
    from speechbrain_ext.access.verifier import Verifier

    folder = shutil.copytree(tiny_model, tmp_path / "model")
    mods = load_verifier(folder).mods
    claims = [speaker_corpus / spk / "utt4.wav" for spk in ("spk0", "spk1", "spk2", "spk3")]
    q = [math.log(sf.info(path).frames / 16000) for path in claims]
    again = ClaimPolicy(replay_check=False)  # the same claims are settled under each threshold.json
    with Verifier(folder, tmp_path / "vp.db", policy=again) as verifier:  # threshold.json of the old format: far mode
        verifier.enroll("spk0", [speaker_corpus / "spk0" / f"utt{u}.wav" for u in range(3)])
        raw = [40.0 * verifier.verify("spk0", path).score + 1.5 * qi for path, qi in zip(claims, q)]
        assert all(verifier.verify("spk0", path).llr is None for path in claims)
    b = math.log(99) - float(np.median(raw))  # the Bayes threshold falls among these claims
    threshold = {"threshold": 0.98, "score": "cosine", "calibration": Calibration(
        "llr", 0.98, LinearLLR(40.0, b, 1.5, "duration")).block(model_fingerprint(mods), 0.01)}
    (folder / "threshold.json").write_text(json.dumps(threshold))
    with Verifier(folder, tmp_path / "vp.db", policy=again) as verifier:
        decisions = []
        for path, qi in zip(claims, q):
            d = verifier.verify("spk0", path)
            llr = 40.0 * d.score + b + 1.5 * qi
            assert d.llr == pytest.approx(llr, abs=1e-6) and d.accepted == (llr >= math.log(99))
            assert d.accepted == (d.score >= d.threshold)
            decisions.append(d.accepted)
        assert len(set(decisions)) == 2, decisions  # the map decides both ways here, so the test can fail
    with Verifier(folder, tmp_path / "vp.db", threshold=-1.0, policy=again) as overridden:
        d = overridden.verify("spk0", speaker_corpus / "spk3" / "utt4.wav")
        assert d.accepted and d.llr is None and d.threshold == -1.0
