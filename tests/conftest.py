"""Shared test fixtures."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf


@pytest.fixture(scope="session")
def write_audio():
    """``write_audio(path, seconds, rate=16000, channels=1)``: a small noise file (.wav or .flac)."""
    rng = np.random.default_rng(0)

    def write(path, seconds, rate=16000, channels=1):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        shape = (int(round(seconds * rate)), channels) if channels > 1 else int(round(seconds * rate))
        sf.write(path, (0.1 * rng.standard_normal(shape)).astype("float32"), rate, subtype="PCM_16")
        return path

    return write
