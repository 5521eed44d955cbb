"""Generated feature-enhancement sources: coloured noise, babble, simulated RIRs."""
import csv

import numpy as np
import soundfile as sf
import torch
from speechbrain.augment.time_domain import AddNoise, AddReverb

from speechbrain_ext.augment import (coloured_noise, prepare_generated_noise,
                                     prepare_simulated_rirs, simulated_rir)


def spectral_slope(x: np.ndarray) -> float:
    """Slope of log power vs log frequency (about -exponent for 1/f^exponent noise)."""
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size)
    band = (freqs > 0.001) & (freqs < 0.4)
    return float(np.polyfit(np.log(freqs[band]), np.log(power[band] + 1e-20), 1)[0])


def test_coloured_noise_has_the_requested_spectral_slope():
    rng = np.random.default_rng(0)
    for exponent in (0.0, 1.0, 2.0):
        x = coloured_noise(64000, exponent, rng)
        assert abs(spectral_slope(x) + exponent) < 0.15
        assert np.isclose(np.abs(x).max(), 0.5)


def test_simulated_rir_starts_with_direct_path_and_decays_60_db_over_rt60():
    rng = np.random.default_rng(1)
    rir = simulated_rir(0.4, rng)
    assert rir.size == int(0.4 * 16000)
    assert np.argmax(np.abs(rir)) == 0 or abs(rir[0]) > 0
    early = np.sqrt(np.mean(rir[40:800] ** 2))
    late = np.sqrt(np.mean(rir[-800:] ** 2))
    assert 20 * np.log10(early / late) > 40  # tens of dB of decay across the response


def test_generated_csvs_feed_speechbrain_noise_and_reverb(tmp_path, write_audio):
    talkers = [str(write_audio(tmp_path / f"t{i}.wav", 1.0)) for i in range(4)]
    noise_csv = prepare_generated_noise(str(tmp_path / "aug" / "noise.csv"), talkers,
                                        num_noises=4, seconds=1.0)
    rir_csv = prepare_simulated_rirs(str(tmp_path / "aug" / "rir.csv"), num_rirs=3)
    rows = list(csv.DictReader(open(noise_csv)))
    assert [r["ID"].split("_")[0] for r in rows] == ["colour", "babble", "colour", "babble"]
    assert all(sf.info(r["wav"]).samplerate == 16000 for r in rows)
    clean = torch.sin(torch.linspace(0, 800, 16000)).unsqueeze(0).repeat(2, 1)
    noisy = AddNoise(csv_file=noise_csv, snr_low=0, snr_high=0)(clean, torch.ones(2))
    snr = 10 * torch.log10(clean.pow(2).mean() / (noisy - clean * 0.5).pow(2).mean())
    assert not torch.allclose(noisy, clean) and snr < 20
    reverbed = AddReverb(csv_file=rir_csv)(clean)
    assert reverbed.shape == clean.shape and not torch.allclose(reverbed, clean)
