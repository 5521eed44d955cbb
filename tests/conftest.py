"""Shared test fixtures."""
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

# run under torchrun by the DDP tests (it reads RANK on import): not a test module
collect_ignore = ["ddp_worker.py"]


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


def _voice(f0: float, seconds: float, rng: np.random.Generator, rate: int = 16000) -> np.ndarray:
    """A crude voiced signal: harmonics of ``f0`` with a speaker-typical spectral tilt, plus noise."""
    t = np.arange(int(seconds * rate)) / rate
    wobble = 1 + 0.02 * np.sin(2 * np.pi * rng.uniform(2, 5) * t)
    sig = sum(np.sin(2 * np.pi * k * f0 * wobble * t) / k ** (1 + f0 / 300) for k in range(1, 12))
    sig = sig * (0.6 + 0.4 * np.sin(2 * np.pi * rng.uniform(1, 3) * t) ** 2)
    sig = sig + 0.05 * rng.standard_normal(t.size)
    return (0.3 * sig / np.abs(sig).max()).astype("float32")


@pytest.fixture(scope="session")
def speaker_corpus(tmp_path_factory) -> Path:
    """A tiny speaker-folder corpus: 6 speakers x 6 files of 1.0-2.5 s, distinct pitches."""
    root = tmp_path_factory.mktemp("speaker_corpus")
    rng = np.random.default_rng(7)
    for s in range(6):
        for u in range(6):
            path = root / f"spk{s}" / f"utt{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _voice(90 + 35 * s, rng.uniform(1.0, 2.5), rng), 16000, subtype="PCM_16")
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny, untrained exported model folder (see test_export.make_tiny_run), threshold.json = 0.98."""
    import json

    from speechbrain_ext.export import export_model
    from test_export import TINY, TRAIN_YAML, make_tiny_run

    tmp = tmp_path_factory.mktemp("tiny_model")
    (tmp / "threshold.json").write_text(json.dumps({"threshold": 0.98, "method": "test"}))
    return export_model(TRAIN_YAML, make_tiny_run(tmp), tmp / "model", tmp / "threshold.json", overrides=TINY)


@pytest.fixture(scope="module")
def single_thread():
    """Run a module's torch code on one thread: on a busy 2-core machine OpenMP wake-ups cost ~10 ms per op."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tone_digits(digits: str, rng: np.random.Generator, f0: float, rate: int = 16000) -> np.ndarray:
    """Digit ``d`` as 0.12 s of harmonics of ``f0 * (1 + d / 4)``, 60 ms pauses between: a toy "speech" a tiny
    CTC model learns in a few steps."""
    pause = np.zeros(int(0.06 * rate), "float32")
    parts = [pause]
    for d in digits:
        t = np.arange(int(0.12 * rate)) / rate
        pitch = f0 * (1 + int(d) / 4)
        parts += [sum(np.sin(2 * np.pi * k * pitch * t) / k for k in (1, 2, 3)).astype("float32"), pause]
    sig = np.concatenate(parts) + 0.01 * rng.standard_normal(sum(map(len, parts))).astype("float32")
    return (0.3 * sig / np.abs(sig).max()).astype("float32")


@pytest.fixture(scope="session")
def digit_corpus(tmp_path_factory) -> Path:
    """A tiny transcribed corpus: 6 speakers x 6 tone-coded digit strings of 3-5 digits. Transcripts in
    ``transcripts.tsv`` (ASCII or Mandarin digits), one ``<utt>.txt`` beside its audio (``spk0/utt1``) and one
    transcript that is not a digit string (``spk1/utt2``: "hello")."""
    root = tmp_path_factory.mktemp("digit_corpus")
    rng = np.random.default_rng(11)
    lines = []
    for s in range(6):
        for u in range(6):
            digits = "".join(str(d) for d in rng.integers(0, 10, size=int(rng.integers(3, 6))))
            path = root / f"spk{s}" / f"utt{u}.wav"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, _tone_digits(digits, rng, 120 + 15 * s), 16000, subtype="PCM_16")
            text = "".join("零一二三四五六七八九"[int(d)] for d in digits) if u % 2 else " ".join(digits)
            if (s, u) == (0, 1):
                path.with_suffix(".txt").write_text(text + "\n", encoding="utf-8")
            else:
                lines.append(f"spk{s}/utt{u}.wav\t{'hello' if (s, u) == (1, 2) else text}")
    (root / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root
