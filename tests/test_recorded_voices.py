"""Tests of the recorded-voice corpus (``data_prep/recorded_voices.py``).

Most run on a fake voices root: two voices laid out as their packages lay
them out (asterisk wav prompts for ``allison``, gcin-voice ogg syllables for
``gcin3``) whose digit ``d`` is a pure tone of ``400 + 300 d`` Hz, so that the
digits of a written string can be read back from the audio. One test uses
the real package data when it is installed. They need sox.
"""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from data_prep.common import CorpusArgumentError
from data_prep.recorded_voices import VOICES, VOICE_INDEX, make_corpus

SCRIPT = Path(__file__).resolve().parents[1] / "data_prep" / "recorded_voices.py"
SR = 16000
TONE_S = 0.25
SMALL = dict(voices=["allison", "gcin3"], pseudo_per_voice=1, utts_per_speaker=3, seed=3,
             min_digits=2, max_digits=5, min_gap=0.1, max_gap=0.2, num_workers=1)

pytestmark = pytest.mark.skipif(shutil.which("sox") is None, reason="needs sox (apt-get install sox)")


def digit_hz(d: int) -> float:
    return 400.0 + 300.0 * d


def tone(hz: float, seconds: float = TONE_S, rate: int = SR) -> np.ndarray:
    """A tone with 10 ms fades between 0.1 s of silence on each side."""
    t = np.arange(int(seconds * rate)) / rate
    ramp = np.minimum(1.0, np.minimum(t, t[-1] - t) / 0.01)
    pad = np.zeros(int(0.1 * rate))
    return np.concatenate([pad, 0.5 * np.sin(2 * np.pi * hz * t) * ramp, pad]).astype(np.float32)


@pytest.fixture(scope="module")
def voices_root(tmp_path_factory) -> Path:
    """A fake /usr/share: allison (8 kHz wav prompts) and gcin3 (44.1 kHz ogg syllables), tone digits."""
    root = tmp_path_factory.mktemp("share")
    rng = np.random.default_rng(0)
    allison, gcin3 = VOICES[VOICE_INDEX["allison"]], VOICES[VOICE_INDEX["gcin3"]]
    for voice, rate in ((allison, 8000), (gcin3, 44100)):
        for d, rel in enumerate(voice.digit_files):
            write_audio(root / rel, tone(digit_hz(d), rate=rate), rate)
    prompts = Path(allison.digit_files[0]).parents[1]
    for k in range(4):
        write_audio(root / prompts / f"word{k}.wav", 0.3 * rng.standard_normal(4800), 8000)
        write_audio(root / f"gcin-voice/ogg/word{k}/3.ogg", 0.3 * rng.standard_normal(26460), 44100)
    write_audio(root / prompts / "beep.wav", tone(1000.0, rate=8000), 8000)  # a tone: not source material
    return root


def write_audio(path: Path, signal: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".ogg":
        wav = path.with_suffix(".tmp.wav")
        sf.write(wav, signal, rate, subtype="PCM_16")
        subprocess.run(["sox", str(wav), str(path)], check=True)
        wav.unlink()
    else:
        sf.write(path, signal, rate, subtype="PCM_16")


@pytest.fixture(scope="module")
def target(tmp_path_factory, voices_root) -> Path:
    folder = tmp_path_factory.mktemp("target") / "corpus"
    make_corpus(str(folder), voices_root=str(voices_root), **SMALL)
    return folder


def transcripts(folder: Path) -> dict:
    rows = (line.split("\t") for line in (folder / "transcripts.tsv").read_text().splitlines())
    return {path: digits for path, digits in rows}


def tone_segments(signal: np.ndarray) -> list:
    """Dominant frequency (Hz) of each run of loud 10 ms frames (>= 40 ms long)."""
    frames = signal[: len(signal) // 160 * 160].reshape(-1, 160)
    level = 10 * np.log10(np.mean(frames**2, axis=1) + 1e-12)
    loud = np.concatenate([[False], level > level.max() - 12, [False]])
    starts, stops = np.flatnonzero(~loud[:-1] & loud[1:]), np.flatnonzero(loud[:-1] & ~loud[1:])
    found = []
    for a, b in zip(starts, stops):
        if b - a >= 4:
            piece = signal[a * 160 : b * 160] * np.hanning((b - a) * 160)
            spectrum = np.abs(np.fft.rfft(piece, 1 << 16))
            found.append(np.argmax(spectrum) * SR / (1 << 16))
    return found


def test_target_is_speaker_folders_of_16k_mono_pcm16_listed_in_transcripts(target):
    speakers = sorted(p.name for p in target.iterdir() if p.is_dir())
    assert speakers == ["allison", "allison_dn3", "gcin3", "gcin3_dn3"]
    wavs = sorted(p.relative_to(target).as_posix() for p in target.glob("*/*.wav"))
    assert len(wavs) == 4 * SMALL["utts_per_speaker"]
    assert sorted(transcripts(target)) == wavs
    for rel in wavs:
        info = sf.info(target / rel)
        assert (info.samplerate, info.channels, info.subtype) == (SR, 1, "PCM_16")
    for digits in transcripts(target).values():
        assert digits.isdigit() and SMALL["min_digits"] <= len(digits) <= SMALL["max_digits"]


def test_the_written_digits_are_the_transcribed_ones_and_pseudo_speakers_are_shifted(target):
    for rel, digits in transcripts(target).items():
        signal, _ = sf.read(target / rel)
        found = tone_segments(signal)
        ratio = 2 ** (-300 / 1200) if "_dn3" in rel else 1.0  # sox pitch -300 cents
        assert len(found) == len(digits), rel
        for hz, d in zip(found, digits):
            assert abs(hz - digit_hz(int(d)) * ratio) < 40, (rel, found, digits)  # tempo keeps the pitch


def test_durations_follow_from_the_digits_gaps_tempo_and_margins(target):
    slow, fast = 1 / 0.9, 1 / 1.1  # tempo in U(0.9, 1.1)
    token = TONE_S + 0.04  # a trimmed token keeps 20 ms on each side (+ a 10 ms frame of rounding)
    for rel, digits in transcripts(target).items():
        n, seconds = len(digits), sf.info(target / rel).duration
        low = fast * (n * TONE_S + (n - 1) * SMALL["min_gap"]) + 0.2
        high = slow * (n * (token + 0.01) + (n - 1) * SMALL["max_gap"]) + 0.6
        assert low <= seconds <= high, (rel, n, seconds)


def test_speakers_tsv_marks_the_pseudo_speakers(target):
    lines = [line.split("\t") for line in (target / "speakers.tsv").read_text().splitlines()]
    assert lines[0] == ["speaker", "voice", "package", "language", "kind", "shift_cents"]
    rows = {row[0]: row[1:] for row in lines[1:]}
    assert rows["allison"] == ["allison", "asterisk-core-sounds-en-wav", "en-US", "recorded", "0"]
    assert rows["gcin3_dn3"] == ["gcin3", "gcin-voice", "zh-TW", "recorded", "-300"]
    assert sorted(rows) == ["allison", "allison_dn3", "gcin3", "gcin3_dn3"]


def test_same_arguments_give_the_same_bytes_and_a_done_corpus_is_reused(target, voices_root, tmp_path):
    again = tmp_path / "again"
    make_corpus(str(again), voices_root=str(voices_root), **SMALL)
    files = sorted(p.relative_to(target) for p in target.rglob("*") if p.is_file() and p.suffix != ".json")
    assert all((target / rel).read_bytes() == (again / rel).read_bytes() for rel in files)
    stamp = (again / "allison" / "u0001.wav").stat().st_mtime_ns
    summary = make_corpus(str(again), voices_root=str(voices_root), **SMALL)
    assert summary["reused"] and summary["num_real_speakers"] == 2 and summary["num_speakers"] == 4
    assert (again / "allison" / "u0001.wav").stat().st_mtime_ns == stamp
    (again / "gcin3" / "u0002.wav").unlink()  # an incomplete corpus is made again
    assert not make_corpus(str(again), voices_root=str(voices_root), **SMALL)["reused"]
    assert (again / "gcin3" / "u0002.wav").read_bytes() == (target / "gcin3" / "u0002.wav").read_bytes()
    other = make_corpus(str(tmp_path / "other"), voices_root=str(voices_root), **{**SMALL, "seed": 4})
    assert not other["reused"]
    assert (tmp_path / "other" / "allison" / "u0001.wav").read_bytes() != (target / "allison" / "u0001.wav").read_bytes()


def test_a_folder_made_with_other_arguments_is_refused(target, voices_root):
    with pytest.raises(CorpusArgumentError, match="other arguments"):
        make_corpus(str(target), voices_root=str(voices_root), **{**SMALL, "max_digits": 6})


def test_one_digit_said_twice_is_not_the_same_recording_twice(voices_root, tmp_path):
    make_corpus(str(tmp_path / "c"), voices_root=str(voices_root),
                **{**SMALL, "voices": ["allison"], "pseudo_per_voice": 0, "min_digits": 1, "max_digits": 1,
                   "utts_per_speaker": 12})
    by_digit = {}
    for rel, digit in transcripts(tmp_path / "c").items():
        by_digit.setdefault(digit, []).append(sf.read(tmp_path / "c" / rel)[0])
    repeated = [signals for signals in by_digit.values() if len(signals) > 1]
    assert repeated  # 12 draws of 10 digits
    for first, second in (signals[:2] for signals in repeated):
        assert len(first) != len(second) or not np.array_equal(first, second)


def test_source_utterances_are_cropped_joins_of_prompts_without_digits_or_tones(voices_root, tmp_path):
    folder = tmp_path / "source"
    summary = make_corpus(str(folder), domain="source", voices_root=str(voices_root),
                          **{**SMALL, "utts_per_speaker": 4})
    assert summary["num_utterances"] == 16 and not (folder / "transcripts.tsv").exists()
    meta = json.loads((folder / ".corpus.json").read_text())
    for key, info in meta["utterances"].items():
        seconds = sf.info(folder / f"{key}.wav").duration
        assert 1.5 - 0.01 <= seconds <= 4.0 + 0.01, (key, seconds)
        assert info["pieces"] and all("/digits/" not in p and "beep" not in p and "/ㄌㄧㄥ2/" not in p
                                      for p in info["pieces"]), info["pieces"]


def test_missing_package_data_is_one_line_naming_the_packages(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run([sys.executable, str(SCRIPT), "--output_folder", str(tmp_path / "c"),
                             "--voices_root", str(empty), "--voices", "allison,gcin3"],
                            capture_output=True, text=True)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("recorded_voices.py: error: no data of ")
    assert "apt-get install asterisk-core-sounds-en-wav gcin-voice" in lines[0]


def test_bad_arguments_are_one_line_usage_errors(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), "--output_folder", str(tmp_path / "c"),
                             "--voices", "allison,nobody"], capture_output=True, text=True)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "unknown voices ['nobody']" in result.stderr


@pytest.mark.skipif(not Path("/usr/share/asterisk/sounds/en_US_f_Allison/digits/0.wav").is_file(),
                    reason="needs asterisk-core-sounds-en-wav")
def test_real_recordings_give_digit_strings_of_plausible_length(tmp_path):
    make_corpus(str(tmp_path / "real"), voices=["allison"], pseudo_per_voice=0, utts_per_speaker=3,
                seed=1, num_workers=1)
    for rel, digits in transcripts(tmp_path / "real").items():
        signal, rate = sf.read(tmp_path / "real" / rel)
        # Allison's trimmed digits are 0.5-0.75 s; gaps 0.05-0.25 s; tempo 0.9-1.1; margins 0.2-0.6 s
        assert 0.4 * len(digits) + 0.2 <= len(signal) / rate <= 1.1 * len(digits) + 0.6
        assert 0.2 <= np.abs(signal).max() <= 0.9 + 1e-3
