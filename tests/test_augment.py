"""Simulated noise and rooms (speechbrain_ext.simulation) and the augmentation sources made of them."""
import csv

import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb

from speechbrain_ext.augment import prepare_generated_noise, prepare_simulated_rirs
from speechbrain_ext.simulation import coloured_noise, room_impulse_response


def spectral_slope(x: np.ndarray) -> float:
    """Slope of log power vs log frequency (about -exponent for 1/f^exponent noise)."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size)
    band = (freqs > 0.002) & (freqs < 0.4)  # 32 Hz - 6.4 kHz at 16 kHz, above the 20 Hz floor
    return float(np.polyfit(np.log(freqs[band]), np.log(power[band] + 1e-20), 1)[0])


def test_coloured_noise_has_the_requested_spectral_slope_and_unit_power():
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):
        x = coloured_noise(64000, exponent, rng)
        assert abs(spectral_slope(x) + exponent) < 0.15
        assert np.mean(x ** 2) == pytest.approx(1.0)


def decay_db_per_s(rir: np.ndarray, rate: int = 16000, window: int = 320) -> float:
    """Slope of the tail's energy in dB over time (20 ms windows), fitted by least squares."""
    tail = rir[1:]
    frames = len(tail) // window
    energy = (tail[: frames * window].reshape(frames, window) ** 2).mean(axis=1)
    times = (np.arange(frames) + 0.5) * window / rate
    return float(np.polyfit(times, 10 * np.log10(energy), 1)[0])


@pytest.mark.parametrize("rt60, drr_db", [(0.2, 0.0), (0.5, 8.0)])
def test_room_impulse_response_direct_path_drr_and_60_db_decay_over_rt60(rt60, drr_db):
    rir = room_impulse_response(rt60, drr_db, np.random.default_rng(1))
    assert len(rir) == int(rt60 * 16000)
    assert np.argmax(np.abs(rir)) == 0 and rir[0] == 1.0  # the direct path is the peak
    assert 10 * np.log10(rir[0] ** 2 / np.sum(rir[1:] ** 2)) == pytest.approx(drr_db)
    assert decay_db_per_s(rir) == pytest.approx(-60 / rt60, rel=0.1)


def test_generated_csvs_feed_speechbrain_noise_and_reverb(tmp_path, write_audio):
    talkers = [str(write_audio(tmp_path / f"t{i}.wav", 1.0)) for i in range(4)]
    noise_csv = prepare_generated_noise(str(tmp_path / "aug" / "noise.csv"), talkers,
                                        num_noises=4, seconds=1.0)
    rir_csv = prepare_simulated_rirs(str(tmp_path / "aug" / "rir.csv"), num_rirs=3, drr_range=(2.0, 6.0))
    rows = list(csv.DictReader(open(noise_csv)))
    assert [r["ID"].split("_")[0] for r in rows] == ["colour", "babble", "colour", "babble"]
    for row in rows:
        noise, rate = sf.read(row["wav"])
        assert rate == 16000 and np.abs(noise).max() == pytest.approx(0.5, abs=1e-4)
    for row in csv.DictReader(open(rir_csv)):
        rir, _ = sf.read(row["wav"])
        assert np.argmax(np.abs(rir)) == 0 and 2.0 <= 10 * np.log10(rir[0] ** 2 / np.sum(rir[1:] ** 2)) <= 6.0
    clean = torch.sin(torch.linspace(0, 800, 16000)).unsqueeze(0).repeat(2, 1)
    noisy = AddNoise(csv_file=noise_csv, snr_low=0, snr_high=0)(clean, torch.ones(2))
    snr = 10 * torch.log10(clean.pow(2).mean() / (noisy - clean * 0.5).pow(2).mean())
    assert not torch.allclose(noisy, clean) and snr < 20
    reverbed = AddReverb(csv_file=rir_csv)(clean)
    assert reverbed.shape == clean.shape and not torch.allclose(reverbed, clean)
