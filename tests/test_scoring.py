"""Tests for speechbrain_ext.scoring: cosine scoring, S-norm, AS-norm, voiceprints."""
import numpy as np
import pytest
import torch

from speechbrain_ext.scoring import Scoring, as_norm, cosine_scores, voiceprints

DIM = 6


@pytest.fixture
def setup():
    """Random embeddings (mapping for enrolment, (ids, matrix) for test), trials, cohort, mean."""
    rng = np.random.default_rng(0)
    enroll = {f"spk{i}": rng.normal(size=DIM) for i in range(4)}
    test_ids = [f"utt{i}" for i in range(7)]
    test_matrix = rng.normal(size=(7, DIM))
    trials = [(e, t, int(rng.random() < 0.3)) for e in enroll for t in test_ids]
    cohort = rng.normal(size=(12, DIM))
    mean = rng.normal(size=DIM) * 0.5
    return enroll, (test_ids, test_matrix), trials, cohort, mean


def loop_cosine(a, b, mean=None):
    """Cosine of two vectors, one dimension at a time."""
    if mean is not None:
        a = [x - m for x, m in zip(a, mean)]
        b = [x - m for x, m in zip(b, mean)]
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (sum(x * x for x in a) ** 0.5 * sum(y * y for y in b) ** 0.5)


def loop_stats(vector, cohort, top_n, mean=None):
    """Mean and population std of the top_n cohort scores of one embedding."""
    top = sorted((loop_cosine(vector, c, mean) for c in cohort), reverse=True)[:top_n]
    mu = sum(top) / len(top)
    return mu, (sum((x - mu) ** 2 for x in top) / len(top)) ** 0.5


def loop_as_norm(trials, enroll, test, cohort, top_n, mean=None):
    """AS-norm one trial at a time: 0.5 [(s - mu_e)/sigma_e + (s - mu_t)/sigma_t]."""
    test_lookup = dict(zip(*test))
    out = []
    for enroll_id, test_id, _ in trials:
        e, t = enroll[enroll_id], test_lookup[test_id]
        s = loop_cosine(e, t, mean)
        mu_e, sigma_e = loop_stats(e, cohort, top_n, mean)
        mu_t, sigma_t = loop_stats(t, cohort, top_n, mean)
        out.append(0.5 * ((s - mu_e) / sigma_e + (s - mu_t) / sigma_t))
    return np.array(out)


@pytest.mark.parametrize("use_mean", [False, True])
@pytest.mark.parametrize("batch_size", [1, 5, 10000])
def test_cosine_scores_match_loop(setup, use_mean, batch_size):
    enroll, test, trials, _, mean = setup
    mean = mean if use_mean else None
    scores = cosine_scores(trials, enroll, test, mean=mean, batch_size=batch_size)
    test_lookup = dict(zip(*test))
    expected = [loop_cosine(enroll[e], test_lookup[t], mean) for e, t, _ in trials]
    np.testing.assert_allclose(scores, expected, atol=1e-12)


def test_mean_subtraction_equals_centred_embeddings(setup):
    enroll, (test_ids, test_matrix), trials, _, mean = setup
    with_mean = cosine_scores(trials, enroll, (test_ids, test_matrix), mean=torch.tensor(mean))
    centred_enroll = {k: v - mean for k, v in enroll.items()}
    centred = cosine_scores(trials, centred_enroll, (test_ids, test_matrix - mean))
    np.testing.assert_allclose(with_mean, centred, atol=1e-12)
    assert not np.allclose(with_mean, cosine_scores(trials, enroll, (test_ids, test_matrix)))


def test_mapping_and_matrix_inputs_agree(setup):
    enroll, (test_ids, test_matrix), trials, _, _ = setup
    as_mapping = {i: torch.tensor(v, dtype=torch.float32) for i, v in zip(test_ids, test_matrix)}
    as_matrix = (list(enroll), np.stack(list(enroll.values())))
    np.testing.assert_allclose(
        cosine_scores(trials, enroll, (test_ids, test_matrix)),
        cosine_scores(trials, as_matrix, as_mapping),
        atol=1e-6,  # float32 copy of the test embeddings
    )


@pytest.mark.parametrize("top_n", [2, 3, 7])
@pytest.mark.parametrize("use_mean", [False, True])
def test_as_norm_matches_loop(setup, top_n, use_mean):
    enroll, test, trials, cohort, mean = setup
    mean = mean if use_mean else None
    raw = cosine_scores(trials, enroll, test, mean=mean)
    normed = as_norm(raw, trials, enroll, test, cohort, top_n=top_n, mean=mean, batch_size=2)
    np.testing.assert_allclose(normed, loop_as_norm(trials, enroll, test, cohort, top_n, mean), atol=1e-10)


@pytest.mark.parametrize("use_mean", [False, True])
def test_as_norm_whole_cohort_is_s_norm(setup, use_mean):
    enroll, test, trials, cohort, mean = setup
    mean = mean if use_mean else None
    raw = cosine_scores(trials, enroll, test, mean=mean)
    normed = as_norm(raw, trials, enroll, test, cohort, top_n=len(cohort), mean=mean)
    np.testing.assert_allclose(normed, loop_as_norm(trials, enroll, test, cohort, len(cohort), mean), atol=1e-10)
    # top_n above the cohort size falls back to the whole cohort
    np.testing.assert_allclose(normed, as_norm(raw, trials, enroll, test, cohort, top_n=1000, mean=mean))
    assert not np.allclose(normed, as_norm(raw, trials, enroll, test, cohort, top_n=3, mean=mean))


def test_as_norm_keeps_good_trials_ordered():
    # one speaker direction per class; AS-norm must not swap a clear target/non-target pair
    enroll = {"a": [1.0, 0.0, 0.0]}
    test = {"same": [0.9, 0.1, 0.0], "other": [0.0, 1.0, 0.2]}
    trials = [("a", "same", 1), ("a", "other", 0)]
    cohort = np.random.default_rng(1).normal(size=(20, 3))
    raw = cosine_scores(trials, enroll, test)
    normed = as_norm(raw, trials, enroll, test, cohort, top_n=5)
    assert normed[0] > normed[1]


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d.update(trials=[("nobody", "utt0", 1)]), "enrolment id 'nobody'"),
        (lambda d: d.update(trials=[("spk0", "nothing", 1)]), "test id 'nothing'"),
        (lambda d: d.update(trials=[]), "no trials"),
        (lambda d: d["enroll"].update(spk0=np.full(DIM, np.nan)), "NaN/inf"),
        (lambda d: d["enroll"].update(spk0=d["mean"].copy()), "zero norm"),
        (lambda d: d.update(mean=np.zeros(DIM + 1)), "mean has shape"),
        (lambda d: d.update(enroll={}), "no enrolment embeddings"),
        (lambda d: d.update(test=(["a"], np.zeros((2, DIM)))), "1 ids for a matrix"),
        (lambda d: d.update(test=(["utt0"], np.ones((1, DIM + 1))), mean=None), "test ones 7"),
    ],
)
def test_cosine_scores_bad_input(setup, change, message):
    enroll, test, trials, _, mean = setup
    args = {"trials": trials, "enroll": enroll, "test": test, "mean": mean}
    change(args)
    with pytest.raises(ValueError, match=message) as info:
        cosine_scores(**args)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"cohort": np.zeros((1, DIM))}, "C >= 2"),
        ({"cohort": np.zeros(DIM)}, "C >= 2"),
        ({"cohort": np.ones((5, DIM + 1))}, "cohort dimension"),
        ({"top_n": 1}, "top_n must be >= 2"),
        ({"cohort": np.ones((5, DIM))}, "zero spread"),
        ({"scores": [0.1, 0.2]}, "one score per trial"),
        ({"scores": "nan"}, "NaN/inf"),
    ],
)
def test_as_norm_bad_input(setup, kwargs, message):
    enroll, test, trials, cohort, _ = setup
    args = {"scores": cosine_scores(trials, enroll, test), "cohort": cohort, "top_n": 3}
    args.update(kwargs)
    if isinstance(args["scores"], str):
        args["scores"] = np.full(len(trials), np.nan)
    with pytest.raises(ValueError, match=message):
        as_norm(args["scores"], trials, enroll, test, args["cohort"], top_n=args["top_n"])


def test_voiceprints_are_means_of_normalised_embeddings():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(5, DIM)) * rng.uniform(0.5, 20, size=(5, 1))  # very different norms
    owner = [0, 1, 0, 2, 1]
    got = voiceprints(emb, owner)
    for g in range(3):
        rows = [e / np.linalg.norm(e) for e, o in zip(emb, owner) if o == g]
        assert np.allclose(got[g].numpy(), np.mean(rows, axis=0), atol=1e-6)
    assert not np.allclose(got[0].numpy(), (emb[0] + emb[2]) / 2 / np.linalg.norm((emb[0] + emb[2]) / 2), atol=1e-3)
    assert torch.equal(voiceprints(emb[[0, 2]]), got[:1])  # one group by default


@pytest.mark.parametrize("embeddings, owner, groups, message", [
    (np.ones((2, DIM)), [0, 2], 3, r"every one of the 3 groups needs an embedding, group counts \[1, 0, 1\]"),
    (np.zeros((1, DIM)), None, None, "zero norm"),
    (np.ones((2, DIM)), [0], None, "need one group per embedding"),
    (np.ones(DIM), None, None, r"need embeddings \[S, D\]"),
])
def test_voiceprints_bad_input(embeddings, owner, groups, message):
    with pytest.raises(ValueError, match=message):
        voiceprints(embeddings, owner, groups)


def test_scoring_is_cosine_or_asnorm(setup):
    enroll, test, trials, cohort, _ = setup
    assert np.array_equal(Scoring()(trials, enroll, test), cosine_scores(trials, enroll, test))
    raw = cosine_scores(trials, enroll, test)
    normed = Scoring("asnorm", torch.as_tensor(cohort), top_n=5)(trials, enroll, test)
    assert np.allclose(normed, as_norm(raw, trials, enroll, test, cohort, top_n=5))
    with pytest.raises(ValueError, match="score kind must be one of cosine, asnorm, got 'plda'"):
        Scoring("plda")
    with pytest.raises(ValueError, match="asnorm scoring needs a cohort"):
        Scoring("asnorm")
