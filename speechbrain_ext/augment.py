"""Feature enhancement sources made on the machine: noise and room responses.

SpeechBrain's ``AddNoise``/``AddReverb`` read CSVs of audio files, and its recipes download MUSAN and the RIR
corpus to fill them. Offline we generate them instead: coloured noise (white, pink, brown), babble (sums of
training utterances) and simulated room impulse responses (``speechbrain_ext.simulation``). The CSVs use
SpeechBrain's extended format (``ID,duration,wav,wav_format,wav_opts``), so real MUSAN/RIR CSVs can be
swapped in through the ``noise_csv``/``rir_csv`` hparams.
"""
import os
from typing import Iterable, Sequence, Tuple

import numpy as np
import soundfile as sf

from speechbrain_ext.audio import read_row
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import SAMPLE_RATE, write_audio_list
from speechbrain_ext.simulation import coloured_noise, room_impulse_response

def _write_sources(csv_path: str, subfolder: str, sources: Iterable[Tuple[str, np.ndarray]], subtype: str,
                   sample_rate: int) -> str:
    """Write each ``(name, signal)`` as ``<csv folder>/<subfolder>/<name>.wav``, then the CSV; returns ``csv_path``."""
    folder = os.path.join(os.path.dirname(csv_path), subfolder)
    os.makedirs(folder, exist_ok=True)
    wavs = []
    for name, sig in sources:
        wavs.append((os.path.join(folder, f"{name}.wav"), len(sig) / sample_rate))
        with atomic_write(wavs[-1][0], "wb") as f:
            sf.write(f, sig, sample_rate, format="WAV", subtype=subtype)
    write_audio_list(csv_path, wavs)
    return csv_path


def prepare_generated_noise(noise_csv: str, train_wavs: Sequence[str], num_noises: int = 40,
                            seconds: float = 4.0, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> str:
    """Write coloured-noise and babble files beside ``noise_csv`` and the CSV itself; returns ``noise_csv``.

    Half the files are coloured noise (exponent uniform in [0, 2]), half are babble: 3 to 6 training rows
    from ``train_wavs`` (manifest ``wav`` fields) mixed at random gains; every file peaks at 0.5.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)

    def noises():
        for i in range(num_noises):
            if i % 2 == 0 or not train_wavs:
                sig, kind = coloured_noise(n, rng.uniform(0.0, 2.0), rng, sample_rate), "colour"
            else:
                sig, kind = np.zeros(n), "babble"
                for wav in rng.choice(list(train_wavs), size=rng.integers(3, 7)):
                    talker = np.resize(read_row(wav, 0, None, sample_rate), n)
                    sig += rng.uniform(0.3, 1.0) * talker / (np.abs(talker).max() + 1e-9)
            yield f"{kind}_{i:03d}", (0.5 * sig / (np.abs(sig).max() + 1e-9)).astype("float32")

    return _write_sources(noise_csv, "generated_noise", noises(), "PCM_16", sample_rate)


def prepare_simulated_rirs(rir_csv: str, num_rirs: int = 40, rt60_range=(0.15, 0.8), drr_range=(0.0, 10.0),
                           seed: int = 0, sample_rate: int = SAMPLE_RATE) -> str:
    """Write ``num_rirs`` simulated room responses beside ``rir_csv`` and the CSV; returns ``rir_csv``.

    RT60 (s) and direct-to-reverberant ratio (dB) are uniform in ``rt60_range`` and ``drr_range`` (0-10 dB:
    the direct path dominates, as at 1-2 m from the talker); see ``simulation.room_impulse_response``.
    """
    rng = np.random.default_rng(seed)
    rirs = ((f"rir_{i:03d}", room_impulse_response(rng.uniform(*rt60_range), rng.uniform(*drr_range), rng,
                                                   sample_rate).astype("float32")) for i in range(num_rirs))
    return _write_sources(rir_csv, "simulated_rirs", rirs, "FLOAT", sample_rate)
