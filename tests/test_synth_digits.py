"""Tests of the built-in synthetic corpus generator (``data_prep/synth_digits.py``).

They need the Debian packages espeak-ng and sox and are skipped without them.
Small corpora (6 speakers x 5 utterances) keep the whole file near 15 s on
2 cores.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.synth_digits import CorpusArgumentError, say_digits, synthesize_corpus

SCRIPT = Path(__file__).resolve().parents[1] / "data_prep" / "synth_digits.py"
SMALL = dict(num_speakers=6, utts_per_speaker=5, seed=7, num_workers=2)

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("sox") is None,
    reason="needs espeak-ng and sox (apt-get install espeak-ng sox)",
)


def wav_files(root: Path) -> dict:
    """Return ``{speaker/utt.wav: bytes}`` for every wav of a corpus."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("*/*.wav"))}


def speakers(root: Path) -> list:
    """Return the speaker folders (hidden folders are not speakers)."""
    return sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def speech_log_mel_mean(path: Path, n_mels: int = 40) -> np.ndarray:
    """Return the mean log-Mel filterbank energy of the speech frames of a file.

    25 ms Hamming frames every 10 ms; frames within 30 dB of the loudest
    frame count as speech.
    """
    signal, rate = sf.read(path)
    frame, hop, nfft = 400, 160, 512
    starts = hop * np.arange(1 + (len(signal) - frame) // hop)
    frames = signal[starts[:, None] + np.arange(frame)] * np.hamming(frame)
    power = np.abs(np.fft.rfft(frames, nfft)) ** 2

    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    edges = 700.0 * (10.0 ** (np.linspace(mel(20.0), mel(rate / 2), n_mels + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(nfft, 1.0 / rate)
    low, mid, high = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising, falling = (bins - low) / (mid - low), (high - bins) / (high - mid)
    filters = np.clip(np.minimum(rising, falling), 0.0, None)
    log_mel = np.log(power @ filters.T + 1e-8)
    loudness = log_mel.max(axis=1)
    return log_mel[loudness > loudness.max() - np.log(1e3)].mean(axis=0)


def run_cli(*args: str, env: dict = None) -> subprocess.CompletedProcess:
    """Run the generator's command line."""
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.fixture(scope="module")
def target_corpus(tmp_path_factory) -> Path:
    """A small Mandarin digit corpus (target domain), generated once."""
    root = tmp_path_factory.mktemp("target")
    synthesize_corpus(str(root), **SMALL)
    return root


def test_layout_and_audio_format(target_corpus):
    assert speakers(target_corpus) == [f"tgt{i:04d}" for i in range(1, 7)]
    files = sorted(target_corpus.glob("*/*.wav"))
    assert len(files) == 6 * 5
    durations = []
    for path in files:
        info = sf.info(path)
        assert (info.samplerate, info.channels, info.subtype) == (16000, 1, "PCM_16")
        durations.append(info.duration)
    # 3-12 digits at 140-220 words per minute, plus 0.1-0.4 s of margins
    assert 0.5 < min(durations) and max(durations) < 6.0
    assert (target_corpus / ".corpus.json").exists()
    assert len(list((target_corpus / ".espeak-ng-data" / "voices" / "!v").iterdir())) == 6


def test_deterministic_for_a_seed(target_corpus, tmp_path):
    synthesize_corpus(str(tmp_path / "same"), **SMALL)
    assert wav_files(tmp_path / "same") == wav_files(target_corpus)
    synthesize_corpus(str(tmp_path / "other"), **{**SMALL, "seed": 8})
    other = wav_files(tmp_path / "other")
    assert other.keys() == wav_files(target_corpus).keys()
    assert all(other[k] != v for k, v in wav_files(target_corpus).items())


def test_speakers_are_distinct_but_not_trivially(target_corpus):
    labels, features = [], []
    for index, speaker in enumerate(speakers(target_corpus)):
        for path in sorted((target_corpus / speaker).glob("*.wav")):
            labels.append(index)
            features.append(speech_log_mel_mean(path))
    labels, features = np.array(labels), np.array(features)
    features = (features - features.mean(0)) / features.std(0)
    # distances[i, k]: utterance i to the centroid of speaker k (leave i out)
    distances = np.zeros((len(labels), labels.max() + 1))
    for i in range(len(labels)):
        others = np.arange(len(labels)) != i
        for k in range(labels.max() + 1):
            centroid = features[others & (labels == k)].mean(0)
            distances[i, k] = np.sum((features[i] - centroid) ** 2)
    accuracy = np.mean(distances.argmin(1) == labels)
    closer = [distances[labels == k, k].mean() < distances[labels != k, k].mean() for k in range(6)]
    assert 0.4 <= accuracy < 1.0  # chance is 1/6; 1.0 would mean no within-speaker variation
    assert sum(closer) >= 5


def test_rerun_reuses_the_corpus(target_corpus, capsys):
    before = {p: p.stat().st_mtime_ns for p in target_corpus.glob("*/*.wav")}
    summary = synthesize_corpus(str(target_corpus), **{**SMALL, "num_workers": 1})
    assert summary["reused"] and summary["num_utterances"] == 30
    assert "reusing" in capsys.readouterr().out
    assert before == {p: p.stat().st_mtime_ns for p in target_corpus.glob("*/*.wav")}


def test_other_arguments_on_a_corpus_are_refused(target_corpus):
    with pytest.raises(CorpusArgumentError, match="other arguments"):
        synthesize_corpus(str(target_corpus), **{**SMALL, "seed": 9})


def test_source_domain_is_longer_and_has_other_speakers(tmp_path):
    summary = synthesize_corpus(str(tmp_path), num_speakers=3, utts_per_speaker=2, domain="source")
    assert speakers(tmp_path) == ["src0001", "src0002", "src0003"]
    assert 2.9 < summary["min_duration"] and summary["max_duration"] <= 6.0


def test_english_digits_from_the_command_line(tmp_path):
    result = run_cli("--output_folder", str(tmp_path), "--num_speakers", "2",
                     "--utts_per_speaker", "2", "--lang", "en", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert len(list(tmp_path.glob("tgt000[12]/u000[12].wav"))) == 4


@pytest.mark.parametrize(
    "bad",
    [
        ["--num_speakers", "0"],
        ["--utts_per_speaker", "-3"],
        ["--min_digits", "-1"],
        ["--min_digits", "8", "--max_digits", "4"],
        ["--min_duration", "-2"],
        ["--lang", "fr"],
        ["--num_speakers", "many"],
    ],
)
def test_bad_arguments_give_one_line(tmp_path, bad):
    result = run_cli("--output_folder", str(tmp_path / "corpus"), *bad)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "error:" in result.stderr
    assert not (tmp_path / "corpus").exists()


def test_missing_tools_say_what_to_install(tmp_path):
    env = {**os.environ, "PATH": str(tmp_path)}  # neither espeak-ng nor sox on PATH
    result = run_cli("--output_folder", str(tmp_path / "corpus"), env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "apt-get install espeak-ng sox" in result.stderr


def test_say_digits_is_a_new_recording_of_a_known_voice(target_corpus, tmp_path):
    names = speakers(target_corpus)
    said = [say_digits(target_corpus, spk, "407213", tmp_path) for spk in names]
    assert said[0] == tmp_path / names[0] / "say1.wav" and sf.info(said[0]).samplerate == 16000
    assert said[0].read_bytes() == say_digits(target_corpus, names[0], "407213", tmp_path / "again").read_bytes()
    assert all(said[0].read_bytes() != p.read_bytes() for p in (target_corpus / names[0]).glob("*.wav"))
    longer = say_digits(target_corpus, names[0], "407213407", tmp_path, take=2)
    assert sf.info(longer).duration > sf.info(said[0]).duration + 0.5  # three more digits are said
    corpus = {k: np.mean([speech_log_mel_mean(p) for p in (target_corpus / k).glob("*.wav")], axis=0) for k in names}
    features = np.array(list(corpus.values()) + [speech_log_mel_mean(p) for p in said])
    scale = features.std(0)
    distances = np.array([[np.sum(((speech_log_mel_mean(p) - corpus[k]) / scale) ** 2) for k in names] for p in said])
    own, others = np.diag(distances), (distances.sum(1) - np.diag(distances)) / (len(names) - 1)
    assert np.sum(own < others) >= 5  # the voice of the speaker asked for, as in the corpus test above
    for speaker, digits in ((names[0], "4o7"), ("nobody", "407")):
        with pytest.raises(CorpusArgumentError, match="cannot say"):
            say_digits(target_corpus, speaker, digits, tmp_path)
