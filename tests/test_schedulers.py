"""Tests for speechbrain_ext.schedulers (preheating)."""

import math
from types import SimpleNamespace

import pytest

from speechbrain_ext.schedulers import LinearRamp, MarginScheduler, WarmupDecayLR


def _steps(start: float, stop: float, num: int = 41) -> list:
    return [start + (stop - start) * i / (num - 1) for i in range(num)]


@pytest.mark.parametrize("decay", ["exp", "cos"])
def test_warmup_then_decay(decay):
    sched = WarmupDecayLR(lr=0.1, final_lr=5e-5, warmup_epochs=2, total_epochs=10, decay=decay)
    assert sched(0.0) == 0.0
    assert sched(1.0) == pytest.approx(0.05)
    assert sched(2.0) == pytest.approx(0.1)
    assert sched(10.0) == pytest.approx(5e-5)
    assert sched(12.5) == pytest.approx(5e-5)
    warmup = [sched(t) for t in _steps(0, 2)]
    decay_values = [sched(t) for t in _steps(2, 10)]
    assert all(b > a for a, b in zip(warmup, warmup[1:]))
    assert all(b < a for a, b in zip(decay_values, decay_values[1:]))


def test_decay_shapes():
    exp = WarmupDecayLR(lr=1.0, final_lr=0.01, warmup_epochs=0, total_epochs=4, decay="exp")
    cos = WarmupDecayLR(lr=1.0, final_lr=0.01, warmup_epochs=0, total_epochs=4, decay="cos")
    none = WarmupDecayLR(lr=1.0, final_lr=0.01, warmup_epochs=1, total_epochs=4, decay="none")
    assert exp(0.0) == 1.0 and cos(0.0) == 1.0  # no warm-up
    assert exp(2.0) == pytest.approx(0.1)  # geometric midpoint
    assert cos(2.0) == pytest.approx(0.505)  # arithmetic midpoint
    assert none(1.0) == none(3.0) == none(100.0) == 1.0
    not_from_zero = WarmupDecayLR(1.0, 0.01, 2, 4, warmup_from_zero=False)
    assert not_from_zero(0.0) == pytest.approx(0.01)
    assert not_from_zero(2.0) == pytest.approx(1.0)


def test_apply_sets_every_param_group_and_is_stateless():
    # apply() only touches optimizer.param_groups; a stand-in avoids the
    # seconds-long first construction of a torch optimizer (the doctest uses SGD).
    optim = SimpleNamespace(param_groups=[{"lr": 1.0}, {"lr": 1.0}])
    sched = WarmupDecayLR(lr=0.2, final_lr=0.002, warmup_epochs=1, total_epochs=3)
    # t = (epoch - 1) + batch_index / num_batches; epoch 1, batch 2 of 4.
    assert sched.apply(optim, (1 - 1) + 2 / 4) == pytest.approx(0.1)
    assert [g["lr"] for g in optim.param_groups] == pytest.approx([0.1, 0.1])
    # A "resumed" schedule queried out of order gives the same values.
    values = [sched(t) for t in (0.0, 0.25, 1.5, 2.75)]
    fresh = WarmupDecayLR(lr=0.2, final_lr=0.002, warmup_epochs=1, total_epochs=3)
    assert [fresh(t) for t in (2.75, 1.5, 0.25, 0.0)] == values[::-1]


def test_lr_invalid_arguments():
    with pytest.raises(ValueError):
        WarmupDecayLR(0.1, 0.0, 1, 5, decay="exp")
    with pytest.raises(ValueError):
        WarmupDecayLR(0.1, 1e-4, 5, 5, decay="cos")
    with pytest.raises(ValueError):
        WarmupDecayLR(0.1, 1e-4, 1, 5, decay="step")


@pytest.mark.parametrize("shape", ["exp", "linear"])
def test_margin_warmup(shape):
    sched = MarginScheduler(0.2, increase_start_epoch=19, fix_start_epoch=39, shape=shape)
    assert sched(0.0) == 0.0
    assert sched(18.99) == 0.0
    assert sched(19.0) == pytest.approx(0.0)
    assert sched(39.0) == 0.2
    assert sched(50.0) == 0.2
    ramp = [sched(t) for t in _steps(19, 39)]
    assert all(b > a for a, b in zip(ramp, ramp[1:]))
    assert ramp[-2] < 0.2
    expected_mid = 0.1 if shape == "linear" else 0.2 * (1 - math.sqrt(1e-3)) / (1 - 1e-3)
    assert sched(29.0) == pytest.approx(expected_mid)


def test_margin_exp_ramp_rises_faster_than_linear_and_constant_when_off():
    exp = MarginScheduler(0.2, 2, 4, shape="exp")
    linear = MarginScheduler(0.2, 2, 4, shape="linear")
    assert exp(2.5) > linear(2.5)
    off = MarginScheduler(0.2, 0, 0)
    assert off(0.0) == off(0.5) == off(10.0) == 0.2
    from_initial = MarginScheduler(0.3, 1, 3, initial_margin=0.1, shape="linear")
    assert from_initial(0.5) == 0.1 and from_initial(2.0) == pytest.approx(0.2)
    with pytest.raises(ValueError):
        MarginScheduler(0.2, 5, 2)


def test_linear_ramp():
    ramp = LinearRamp(final_value=0.5, ramp_epochs=4, start_epoch=1)
    values = [ramp(t) for t in (0.0, 1.0, 3.0, 5.0, 9.0)]
    assert values == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.5])
    assert LinearRamp(0.5, ramp_epochs=0)(0.0) == 0.5
    step = LinearRamp(0.5, ramp_epochs=0, start_epoch=2)
    assert step(1.9) == 0.0 and step(2.0) == 0.5
