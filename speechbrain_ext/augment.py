"""Feature enhancement sources made on the machine: noise and room responses.

SpeechBrain's ``AddNoise``/``AddReverb`` read CSVs of audio files, and its
recipes download MUSAN and the RIR corpus to fill them. Offline we generate
them instead: coloured noise (white, pink, brown), babble (sums of training
utterances) and simulated room impulse responses (exponentially decaying
noise after a direct path, random RT60). The CSVs use SpeechBrain's extended
format (``ID,duration,wav,wav_format,wav_opts``), so real MUSAN/RIR CSVs can
be swapped in through the ``noise_csv``/``rir_csv`` hparams.
"""
import csv
import os
from typing import List, Sequence

import numpy as np
import soundfile as sf

from speechbrain_ext.audio import SAMPLE_RATE, read_row
from speechbrain_ext.io_utils import atomic_write

CSV_HEADER = ["ID", "duration", "wav", "wav_format", "wav_opts"]


def coloured_noise(num_samples: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum ~ 1/f^exponent (0 white, 1 pink, 2 brown).

    Returns
    -------
    float32 array ``[num_samples]`` with peak 0.5.
    """
    spectrum = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    freqs[0] = freqs[1]
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2), n=num_samples)
    return (0.5 * noise / np.abs(noise).max()).astype("float32")


def simulated_rir(rt60: float, rng: np.random.Generator, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A room impulse response: direct path then noise decaying 60 dB in ``rt60`` s.

    Returns
    -------
    float32 array ``[int(rt60 * sample_rate)]`` with the direct path at index 0.
    """
    n = max(int(rt60 * sample_rate), 2)
    t = np.arange(n) / sample_rate
    tail = rng.standard_normal(n) * np.exp(-6.9 * t / rt60)
    pre_delay = int(0.002 * sample_rate)
    tail[:pre_delay] = 0.0
    tail[0] = 1.0 / rng.uniform(1.0, 4.0)
    return (tail / np.abs(tail).max()).astype("float32")


def _write_sources_csv(path: str, wavs: Sequence[str], sample_rate: int) -> str:
    with atomic_write(path, newline="") as f:
        writer = csv.writer(f)
        writer.writerow(CSV_HEADER)
        for i, wav in enumerate(wavs):
            writer.writerow([f"{os.path.basename(wav)[:-4]}_{i}", f"{sf.info(wav).duration:.3f}",
                             wav, "wav", ""])
    return path


def prepare_generated_noise(noise_csv: str, train_wavs: Sequence[str], num_noises: int = 40,
                            seconds: float = 4.0, seed: int = 0,
                            sample_rate: int = SAMPLE_RATE) -> str:
    """Write coloured-noise and babble files beside ``noise_csv`` and the CSV itself.

    Half the files are coloured noise (exponent uniform in [0, 2]), half are
    babble: 3 to 6 training rows from ``train_wavs`` (manifest ``wav`` fields)
    mixed at random gains. Returns ``noise_csv``.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(os.path.dirname(noise_csv), "generated_noise")
    os.makedirs(folder, exist_ok=True)
    n = int(seconds * sample_rate)
    wavs: List[str] = []
    for i in range(num_noises):
        if i % 2 == 0 or not train_wavs:
            sig, kind = coloured_noise(n, rng.uniform(0.0, 2.0), rng), "colour"
        else:
            sig, kind = np.zeros(n, dtype="float32"), "babble"
            for wav in rng.choice(list(train_wavs), size=rng.integers(3, 7)):
                talker = np.resize(read_row(wav, 0, None, sample_rate), n)
                sig += rng.uniform(0.3, 1.0) * talker / (np.abs(talker).max() + 1e-9)
            sig = 0.5 * sig / (np.abs(sig).max() + 1e-9)
        path = os.path.join(folder, f"{kind}_{i:03d}.wav")
        with atomic_write(path, "wb") as f:
            sf.write(f, sig, sample_rate, format="WAV", subtype="PCM_16")
        wavs.append(path)
    return _write_sources_csv(noise_csv, wavs, sample_rate)


def prepare_simulated_rirs(rir_csv: str, num_rirs: int = 40, rt60_range=(0.15, 0.8),
                           seed: int = 0, sample_rate: int = SAMPLE_RATE) -> str:
    """Write ``num_rirs`` simulated room responses beside ``rir_csv`` and the CSV."""
    rng = np.random.default_rng(seed)
    folder = os.path.join(os.path.dirname(rir_csv), "simulated_rirs")
    os.makedirs(folder, exist_ok=True)
    wavs: List[str] = []
    for i in range(num_rirs):
        path = os.path.join(folder, f"rir_{i:03d}.wav")
        with atomic_write(path, "wb") as f:
            sf.write(f, simulated_rir(rng.uniform(*rt60_range), rng, sample_rate), sample_rate,
                     format="WAV", subtype="FLOAT")
        wavs.append(path)
    return _write_sources_csv(rir_csv, wavs, sample_rate)
