"""Reading manifest rows as waveforms, with one-line errors for bad audio.

A manifest ``wav`` field is one path or several joined by ``;`` (a concatenated row, see ``data_prep``);
``start``/``stop`` are sample indices into the joined signal. SpeechBrain's ``read_audio`` handles neither the
list nor a clear error naming the file, hence this module.
"""
from typing import Optional

import numpy as np
import soundfile as sf
import torch

from speechbrain_ext.manifest import SAMPLE_RATE


class AudioError(ValueError):
    """A file the pipeline cannot use; the message names the file and the problem."""


def read_file(path: str, start: int = 0, stop: Optional[int] = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples ``[start, stop)`` of a mono file at ``sample_rate``: float32, shape ``[stop - start]``."""
    try:
        with sf.SoundFile(path) as f:
            if f.samplerate != sample_rate:
                raise AudioError(f"{path}: sample rate {f.samplerate} Hz, expected {sample_rate} Hz")
            if f.channels != 1:
                raise AudioError(f"{path}: {f.channels} channels, expected mono")
            f.seek(start)
            data = f.read(frames=-1 if stop is None else stop - start, dtype="float32")
    except (sf.LibsndfileError, RuntimeError, OSError) as err:  # AudioError is none of these
        raise AudioError(f"{path}: cannot read audio ({err})") from err
    if data.size == 0:
        raise AudioError(f"{path}: no samples in [{start}, {stop})")
    return data


def read_row(wav: str, start: int = 0, stop: Optional[int] = None, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Samples ``[start, stop)`` of a manifest row (one file or a ``;`` list).

    Example
    -------
    >>> import tempfile, os, soundfile as sf, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> for name, n in (("a.wav", 100), ("b.wav", 50)):
    ...     sf.write(os.path.join(d, name), np.ones(n) * 0.1, 16000)
    >>> read_row(os.path.join(d, "a.wav") + ";" + os.path.join(d, "b.wav"), 90, 120).shape
    (30,)
    """
    paths = wav.split(";")
    if len(paths) == 1:
        return read_file(paths[0], start, stop, sample_rate)
    return np.concatenate([read_file(p, 0, None, sample_rate) for p in paths])[start:stop]


def repeat_pad(signal: torch.Tensor, length: int) -> torch.Tensor:
    """Tile ``signal`` ([T]) until it has ``length`` samples (WeSpeaker-style padding).

    Example
    -------
    >>> repeat_pad(torch.tensor([1., 2., 3.]), 7).tolist()
    [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    """
    if signal.numel() >= length:
        return signal[:length]
    return signal.repeat(-(-length // signal.numel()))[:length]
