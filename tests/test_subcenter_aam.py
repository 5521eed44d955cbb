"""Tests for speechbrain_ext.losses.subcenter_aam (multi-subspace CE)."""

import math

import pytest
import torch
import torch.nn.functional as F
from speechbrain.lobes.models.ECAPA_TDNN import Classifier
from speechbrain.nnet.losses import AdditiveAngularMargin, LogSoftmaxWrapper

from speechbrain_ext.losses import SubCenterAAM, SubspaceClassifier


def _cosines_with_extremes(batch: int = 6, classes: int = 5) -> tuple:
    """Random cosines plus rows that hit the fallback branch and cos = +-1."""
    gen = torch.Generator().manual_seed(0)
    cos = torch.rand(batch, classes, generator=gen) * 2 - 1
    targets = torch.randint(0, classes, (batch,), generator=gen)
    cos[0, targets[0]] = -0.995  # below cos(pi - 0.2) = -0.980: fallback
    cos[1, targets[1]] = 1.0
    cos[2, targets[2]] = -1.0
    return cos, targets


@pytest.mark.parametrize("margin, easy_margin", [(0.2, False), (0.5, False), (0.3, True)])
def test_k1_equals_speechbrain_aam(margin, easy_margin):
    cos, targets = _cosines_with_extremes()
    ours_in = cos.clone().unsqueeze(1).requires_grad_()
    sb_in = cos.clone().unsqueeze(1).requires_grad_()
    ours = SubCenterAAM(1, margin=margin, scale=30.0, easy_margin=easy_margin)(
        ours_in, targets
    )
    sb = LogSoftmaxWrapper(AdditiveAngularMargin(margin, 30.0, easy_margin))(
        sb_in, targets.unsqueeze(1)
    )
    torch.testing.assert_close(ours, sb, rtol=1e-6, atol=1e-6)
    ours.backward()
    sb.backward()
    torch.testing.assert_close(ours_in.grad, sb_in.grad, rtol=1e-5, atol=1e-7)


def test_k1_equals_speechbrain_on_classifier_output():
    torch.manual_seed(0)
    head = Classifier(input_size=16, out_neurons=7)
    cosines = head(torch.randn(8, 1, 16))  # [B, 1, C]
    targets = torch.randint(0, 7, (8,))
    ours = SubCenterAAM(1, margin=0.2, scale=30.0)(cosines, targets)
    sb = LogSoftmaxWrapper(AdditiveAngularMargin(0.2, 30.0))(cosines, targets.unsqueeze(1))
    torch.testing.assert_close(ours, sb, rtol=1e-6, atol=1e-6)
    # [B, C*K] and [B, 1, C*K] inputs give the same loss.
    torch.testing.assert_close(SubCenterAAM()(cosines.squeeze(1), targets), ours)


def test_subcenter_max_picks_the_right_center():
    # C=2 classes, K=3 sub-centers, class-major rows j*K+k.
    cos = torch.tensor(
        [
            [0.1, 0.9, 0.2, -0.5, -0.1, -0.3],  # class 0 -> k=1, class 1 -> k=1
            [0.3, 0.0, 0.7, 0.6, 0.2, 0.4],  # class 0 -> k=2, class 1 -> k=0
        ],
        requires_grad=True,
    )
    loss_fn = SubCenterAAM(num_subcenters=3, margin=0.2, scale=10.0)
    expected = 10.0 * torch.tensor([[0.9, -0.1], [0.7, 0.6]])
    torch.testing.assert_close(loss_fn.logits(cos), expected)
    loss_fn(cos, torch.tensor([0, 1])).backward()
    picked = torch.tensor(
        [[False, True, False, False, True, False], [False, False, True, True, False, False]]
    )
    assert (cos.grad[picked] != 0).all()
    assert (cos.grad[~picked] == 0).all()
    # The loss equals a K=1 loss on the per-class maxima.
    torch.testing.assert_close(
        loss_fn(cos, torch.tensor([0, 1])),
        SubCenterAAM(1, margin=0.2, scale=10.0)(expected / 10.0, torch.tensor([0, 1])),
    )


def test_margin_applied_only_to_target():
    cos, targets = _cosines_with_extremes()
    cos = cos.clamp(-0.9, 0.9)  # stay on the cos(theta + m) branch
    margin, scale = 0.3, 20.0
    expected_logits = scale * cos.clone()
    rows = torch.arange(cos.shape[0])
    expected_logits[rows, targets] = scale * torch.cos(torch.acos(cos[rows, targets]) + margin)
    expected = F.cross_entropy(expected_logits, targets)
    got = SubCenterAAM(1, margin=margin, scale=scale)(cos, targets)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
    # Margin-free logits carry no margin at all.
    torch.testing.assert_close(SubCenterAAM(1, margin, scale).logits(cos), scale * cos)


@pytest.mark.parametrize("topk", [1, 3])
def test_topk_penalty_affects_exactly_k_non_targets(topk):
    gen = torch.Generator().manual_seed(1)
    cos = torch.rand(4, 6, generator=gen) * 1.6 - 0.8
    targets = torch.tensor([0, 5, 2, 2])
    plain = SubCenterAAM(1, margin=0.2, scale=30.0)
    penalised = SubCenterAAM(1, margin=0.2, scale=30.0, topk=topk, margin_topk=0.06)
    changed = penalised._margin_logits(cos, targets) != plain._margin_logits(cos, targets)
    assert (changed.sum(dim=1) == topk).all()
    non_target = cos.scatter(1, targets.unsqueeze(1), -2.0)
    hardest = non_target.topk(topk, dim=1).indices
    assert changed.gather(1, hardest).all()
    # The changed logits are s * cos(theta - m_p), which is larger than s * cos.
    expected_logits = plain._margin_logits(cos, targets).clone()
    for row in range(4):
        for col in hardest[row]:
            expected_logits[row, col] = 30.0 * math.cos(math.acos(cos[row, col]) - 0.06)
    torch.testing.assert_close(
        penalised(cos, targets), F.cross_entropy(expected_logits, targets), rtol=1e-5, atol=1e-6
    )
    assert penalised(cos, targets) > plain(cos, targets)


def test_gradients_finite_at_cos_plus_minus_one():
    cos = torch.tensor(
        [[1.0, -1.0, 0.5, 1.0], [-1.0, 1.0, -1.0, 0.0], [0.2, 1.0, -1.0, 1.0]],
        requires_grad=True,
    )
    targets = torch.tensor([0, 0, 1])  # valid for C=4 (K=1) and C=2 (K=2)
    for loss_fn in (
        SubCenterAAM(1, margin=0.2),
        SubCenterAAM(2, margin=0.2, fallback="wespeaker"),
        SubCenterAAM(1, margin=0.2, topk=2),
        SubCenterAAM(1, margin=0.2, easy_margin=True),
    ):
        cos.grad = None
        loss = loss_fn(cos, targets)
        loss.backward()
        assert torch.isfinite(loss)
        assert torch.isfinite(cos.grad).all()


def test_wespeaker_fallback_is_continuous_at_threshold():
    margin = 0.2
    loss_fn = SubCenterAAM(1, margin=margin, scale=1.0, fallback="wespeaker")
    threshold = math.cos(math.pi - margin)
    below = loss_fn._margin_logits(torch.tensor([[threshold - 1e-4, 0.0]]), torch.tensor([0]))
    above = loss_fn._margin_logits(torch.tensor([[threshold + 1e-4, 0.0]]), torch.tensor([0]))
    assert abs(float(below[0, 0]) + 1.0) < 1e-3
    assert abs(float(above[0, 0]) + 1.0) < 1e-3


def test_set_margin_equals_fresh_module():
    cos, targets = _cosines_with_extremes()
    warm = SubCenterAAM(2, margin=0.2, scale=30.0)
    cos2 = cos.repeat_interleave(2, dim=1)  # K=2 with equal sub-centers
    before = warm(cos2, targets)
    warm.set_margin(0.1)
    after = warm(cos2, targets)
    assert not torch.isclose(before, after)
    torch.testing.assert_close(after, SubCenterAAM(2, margin=0.1, scale=30.0)(cos2, targets))
    assert warm.margin == 0.1

    # The inter-top-k margin follows: m_p = 0.06 * 0.1 / 0.2.
    topk = SubCenterAAM(1, margin=0.2, topk=2, margin_topk=0.06)
    topk.set_margin(0.1)
    fresh = SubCenterAAM(1, margin=0.1, topk=2, margin_topk=0.03)
    torch.testing.assert_close(topk(cos, targets), fresh(cos, targets))


def test_subspace_reading_shapes_and_averaging():
    torch.manual_seed(0)
    head = SubspaceClassifier(input_size=12, out_neurons=5, num_subspaces=3)
    emb = torch.randn(4, 1, 12)
    cosines = head(emb)
    assert cosines.shape == (4, 3, 5)
    # Subspace m scores only the slice emb[..., 4m:4m+4].
    manual = F.normalize(emb[:, 0, 4:8], dim=-1) @ F.normalize(head.weight[1], dim=-1).T
    torch.testing.assert_close(cosines[:, 1], manual)
    targets = torch.tensor([0, 4, 2, 1])
    loss_fn = SubCenterAAM(1, margin=0.2, scale=30.0)
    per_subspace = torch.stack([loss_fn(cosines[:, m], targets) for m in range(3)])
    torch.testing.assert_close(loss_fn(cosines, targets), per_subspace.mean())
    torch.testing.assert_close(loss_fn.logits(cosines), 30.0 * cosines.mean(dim=1))
    with pytest.raises(ValueError):
        SubspaceClassifier(input_size=10, out_neurons=5, num_subspaces=3)


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        SubCenterAAM(num_subcenters=3)(torch.rand(2, 7), torch.tensor([0, 1]))
    with pytest.raises(ValueError):
        SubCenterAAM()(torch.rand(2, 4), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError):
        SubCenterAAM(topk=4)(torch.rand(2, 4), torch.tensor([0, 1]))


def test_drop_subcenters_keeps_each_speakers_dominant_center():
    """Class 0's samples sit on sub-center 2, class 1's on sub-center 0: those are kept."""
    loss = SubCenterAAM(num_subcenters=3, margin=0.2, scale=30.0)
    cosines = torch.full((6, 2 * 3), -0.5)
    cosines[:4, 0 * 3 + 2] = 0.9   # class 0, sub-center 2 (4 samples)
    cosines[4:, 1 * 3 + 0] = 0.8   # class 1, sub-center 0 (2 samples)
    cosines[0, 0 * 3 + 1] = 0.95   # one class-0 sample nearer sub-center 1
    targets = torch.tensor([0, 0, 0, 0, 1, 1])
    loss.count_assignments(cosines, targets)
    assert loss.assignments.tolist() == [[0, 1, 3], [2, 0, 0]]
    assert loss.drop_subcenters().tolist() == [2, 0]
    probe = torch.rand(3, 6)
    expected = 30.0 * probe.reshape(3, 2, 3)[:, [0, 1], [2, 0]]
    assert torch.allclose(loss.logits(probe), expected)  # only the dominant sub-centers count


def test_drop_subcenters_needs_counts():
    with pytest.raises(RuntimeError, match="count_assignments"):
        SubCenterAAM(num_subcenters=2).drop_subcenters()


def test_dropped_mask_round_trips_through_a_state_dict():
    loss = SubCenterAAM(num_subcenters=2)
    loss.count_assignments(torch.rand(4, 6), torch.tensor([0, 1, 2, 0]))
    loss.drop_subcenters()
    fresh = SubCenterAAM(num_subcenters=2)
    fresh.load_state_dict(loss.state_dict())
    assert torch.equal(fresh.active, loss.active) and torch.equal(fresh.assignments, loss.assignments)
