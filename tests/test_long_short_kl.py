"""Tests for speechbrain_ext.losses.long_short_kl (long/short relative entropy)."""

import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal, kl_divergence

from speechbrain_ext.losses import LongShortKL


def _logits(seed: int, batch: int = 5, classes: int = 7) -> torch.Tensor:
    return torch.randn(batch, classes, generator=torch.Generator().manual_seed(seed)) * 3


def test_zero_when_logits_equal_positive_otherwise():
    loss_fn = LongShortKL(temperature=2.0)
    z = _logits(0)
    assert abs(float(loss_fn(z, z.clone()))) < 1e-6
    assert float(loss_fn(_logits(1), z)) > 1e-3
    # A constant shift of the logits leaves the posteriors unchanged.
    assert abs(float(loss_fn(z + 4.0, z))) < 1e-5


def test_no_gradient_reaches_long_branch():
    short_logits = _logits(0).requires_grad_()
    long_logits = _logits(1).requires_grad_()
    short_emb = torch.randn(5, 1, 8, requires_grad=True)
    long_emb = torch.randn(5, 1, 8, requires_grad=True)
    loss = LongShortKL(cosine_weight=1.0)(short_logits, long_logits, short_emb, long_emb)
    loss.backward()
    assert long_logits.grad is None and long_emb.grad is None
    assert short_logits.grad.abs().sum() > 0 and short_emb.grad.abs().sum() > 0

    targets = torch.tensor([0, 0, 1, 1, 1])
    short_emb.grad = None
    LongShortKL(mode="gaussian")(None, None, short_emb, long_emb, targets).backward()
    assert long_emb.grad is None
    assert short_emb.grad.abs().sum() > 0


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_temperature_is_t_squared_kl(temperature):
    z_s, z_l = _logits(0), _logits(1)
    p_l = F.softmax(z_l / temperature, dim=-1)
    p_s = F.softmax(z_s / temperature, dim=-1)
    kl = (p_l * (p_l.log() - p_s.log())).sum(dim=-1).mean()
    got = LongShortKL(temperature=temperature)(z_s, z_l)
    torch.testing.assert_close(got, temperature**2 * kl, rtol=1e-5, atol=1e-6)


def test_high_temperature_limit():
    # T^2 KL -> 1/(2C) sum_j (d_j - mean d)^2 with d = z_S - z_L, as T -> inf.
    z_s, z_l = _logits(0).double(), _logits(1).double()
    diff = z_s - z_l
    limit = ((diff - diff.mean(dim=-1, keepdim=True)) ** 2).mean(dim=-1).mean() / 2
    got = LongShortKL(temperature=1000.0)(z_s, z_l)
    torch.testing.assert_close(got, limit, rtol=1e-2, atol=0.0)
    assert not torch.isclose(LongShortKL(temperature=1.0)(z_s, z_l), limit, rtol=1e-2)


def test_cosine_term():
    z = _logits(0)
    emb = torch.randn(5, 8)
    orthogonal = torch.zeros(5, 8)
    orthogonal[:, 0] = 1.0
    emb_orth = orthogonal.roll(1, dims=1)  # e_S = unit x_1, e_L = unit x_0
    details = LongShortKL(cosine_weight=0.5).details(z, z, emb_orth, orthogonal)
    torch.testing.assert_close(details.cosine, torch.tensor(1.0))
    torch.testing.assert_close(details.loss, details.kl + 0.5)
    # A scaled copy is at cosine distance 0; [B, 1, D] works like [B, D].
    parallel = LongShortKL(cosine_weight=0.5).details(z, z, 3 * emb.unsqueeze(1), emb)
    assert abs(float(parallel.cosine)) < 1e-6
    expected = (1 - F.cosine_similarity(emb, emb.flip(0), dim=-1)).mean()
    torch.testing.assert_close(
        LongShortKL(cosine_weight=2.0).details(z, z, emb, emb.flip(0)).loss,
        2.0 * expected,
        atol=1e-6,
        rtol=1e-5,
    )
    with pytest.raises(ValueError):
        LongShortKL(cosine_weight=1.0)(z, z)


def test_gaussian_zero_for_identical_and_matches_closed_form():
    gen = torch.Generator().manual_seed(0)
    emb = torch.randn(7, 4, generator=gen)
    targets = torch.tensor([0, 0, 0, 1, 1, 2, 3])  # speakers 2, 3: one sample, ignored
    loss_fn = LongShortKL(mode="gaussian", variance_floor=1e-4)
    assert abs(float(loss_fn(None, None, emb, emb.clone(), targets))) < 1e-6

    long_emb = emb * 1.5 + 0.3
    got = loss_fn(None, None, emb, long_emb, targets)
    assert float(got) > 0.1
    expected = []
    for speaker in (0, 1):
        mask = targets == speaker
        normal_s = Normal(emb[mask].mean(0), (emb[mask].var(0) + 1e-4).sqrt())
        normal_l = Normal(long_emb[mask].mean(0), (long_emb[mask].var(0) + 1e-4).sqrt())
        expected.append(kl_divergence(normal_s, normal_l).sum())
    torch.testing.assert_close(got, torch.stack(expected).mean(), rtol=1e-5, atol=1e-6)

    # Changing a speaker with a single sample changes nothing.
    moved = emb.clone()
    moved[6] += 10.0
    torch.testing.assert_close(loss_fn(None, None, moved, long_emb, targets), got)


def test_gaussian_without_pairs_is_zero_with_graph():
    short_emb = torch.randn(3, 4, requires_grad=True)
    loss = LongShortKL(mode="gaussian")(None, None, short_emb, torch.randn(3, 4), torch.arange(3))
    assert float(loss.detach()) == 0.0 and loss.requires_grad


def test_invalid_arguments():
    with pytest.raises(ValueError):
        LongShortKL(mode="mse")
    with pytest.raises(ValueError):
        LongShortKL(temperature=0.0)
    with pytest.raises(ValueError):
        LongShortKL(mode="gaussian")(None, None, torch.randn(2, 3), torch.randn(2, 3))
