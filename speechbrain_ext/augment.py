"""Feature enhancement sources made on the machine: noise and room responses.

SpeechBrain's ``AddNoise``/``AddReverb`` read CSVs of audio files, and its
recipes download MUSAN and the RIR corpus to fill them. Offline we generate
them instead: coloured noise (white, pink, brown), babble (sums of training
utterances) and simulated room impulse responses (a direct path, then
exponentially decaying noise; random RT60 and direct-to-reverberant ratio),
the noise and rooms of ``speechbrain_ext.simulation``. The CSVs use
SpeechBrain's extended format (``ID,duration,wav,wav_format,wav_opts``), so
real MUSAN/RIR CSVs can be swapped in through the ``noise_csv``/``rir_csv``
hparams.
"""
import csv
import os
from typing import List, Sequence

import numpy as np
import soundfile as sf

from speechbrain_ext.audio import read_row
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.simulation import coloured_noise, room_impulse_response

CSV_HEADER = ["ID", "duration", "wav", "wav_format", "wav_opts"]


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
    mixed at random gains; every file peaks at 0.5. Returns ``noise_csv``.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(os.path.dirname(noise_csv), "generated_noise")
    os.makedirs(folder, exist_ok=True)
    n = int(seconds * sample_rate)
    wavs: List[str] = []
    for i in range(num_noises):
        if i % 2 == 0 or not train_wavs:
            sig, kind = coloured_noise(n, rng.uniform(0.0, 2.0), rng, sample_rate), "colour"
        else:
            sig, kind = np.zeros(n), "babble"
            for wav in rng.choice(list(train_wavs), size=rng.integers(3, 7)):
                talker = np.resize(read_row(wav, 0, None, sample_rate), n)
                sig += rng.uniform(0.3, 1.0) * talker / (np.abs(talker).max() + 1e-9)
        sig = (0.5 * sig / (np.abs(sig).max() + 1e-9)).astype("float32")
        path = os.path.join(folder, f"{kind}_{i:03d}.wav")
        with atomic_write(path, "wb") as f:
            sf.write(f, sig, sample_rate, format="WAV", subtype="PCM_16")
        wavs.append(path)
    return _write_sources_csv(noise_csv, wavs, sample_rate)


def prepare_simulated_rirs(rir_csv: str, num_rirs: int = 40, rt60_range=(0.15, 0.8), drr_range=(0.0, 10.0),
                           seed: int = 0, sample_rate: int = SAMPLE_RATE) -> str:
    """Write ``num_rirs`` simulated room responses beside ``rir_csv`` and the CSV.

    RT60 (s) and direct-to-reverberant ratio (dB) are drawn uniformly from
    ``rt60_range`` and ``drr_range`` (0-10 dB: the direct path dominates, as
    in a room at 1-2 m from the talker), see
    ``simulation.room_impulse_response``. Returns ``rir_csv``.
    """
    rng = np.random.default_rng(seed)
    folder = os.path.join(os.path.dirname(rir_csv), "simulated_rirs")
    os.makedirs(folder, exist_ok=True)
    wavs: List[str] = []
    for i in range(num_rirs):
        path = os.path.join(folder, f"rir_{i:03d}.wav")
        with atomic_write(path, "wb") as f:
            rir = room_impulse_response(rng.uniform(*rt60_range), rng.uniform(*drr_range), rng, sample_rate)
            sf.write(f, rir.astype("float32"), sample_rate, format="WAV", subtype="FLOAT")
        wavs.append(path)
    return _write_sources_csv(rir_csv, wavs, sample_rate)
