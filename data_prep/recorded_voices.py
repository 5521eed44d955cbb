"""Second built-in corpus: recorded human voices that Debian packages ship.

The espeak-ng corpus (``synth_digits.py``) comes from one formant synthesiser
and flatters any model trained and tested on it. This one is made from real
recordings, installed with apt (``scripts/system_deps.sh``), nothing
downloaded at run time:

========== ================================ ======== ========================
voice      Debian package                   language material
========== ================================ ======== ========================
allison    asterisk-core-sounds-en-wav      en-US    ~560 IVR prompts, 8 kHz
june       asterisk-core-sounds-fr-wav      fr-CA    ~560 prompts, 8 kHz
carlo      asterisk-core-sounds-it-wav      it-IT    ~600 prompts (male)
menardi    asterisk-prompt-it-menardi-wav   it-IT    ~550 prompts
ivrvoice   asterisk-core-sounds-ru-wav      ru-RU    ~570 prompts
armelle    asterisk-prompt-fr-armelle       fr-FR    ~320 prompts (GSM)
esco       asterisk-prompt-es-co            es-CO    ~280 prompts (GSM)
gcin3      gcin-voice (Edward Liu)          zh-TW    1200 Mandarin syllables
gcin5      gcin-voice (Chu Lo)              zh-TW    1158 syllables, voicebank
                                                     takes on one flat pitch
flite_*    flite (kal, awb, rms, slt)       en       synthetic (one real
                                                     speaker each), text
========== ================================ ======== ========================

Each real voice is one speaker (the asterisk "es_MX_f_Allison" prompts are
the same person as allison and are not used). Every voice has its own
recording of each digit 0-9 (asterisk ``digits/<d>``; gcin the syllables
ling2 yi1 er4 san1 si4 wu3 liu4 qi1 ba1 jiu3). gcompris-qt-data, the first
candidate, ships no voices in Debian (GCompris downloads them at run time).

Speakers: every chosen voice, plus ``pseudo_per_voice`` pseudo-speakers per
voice made with sox ``pitch`` (a shift of pitch *and* formants, as a shorter or
longer vocal tract): -300, +300, -500, +500... cents, named
``<voice>_dn3``, ``<voice>_up3``, ``<voice>_dn5``... ``speakers.tsv``
(``speaker voice package language kind shift_cents``, kind ``recorded`` or
``synthetic``) tells them apart so that results can be reported on real
voices only.

Two domains:

- ``target``: strings of ``min_digits``-``max_digits`` random digits, the
  voice's digit recordings joined with random gaps; ``transcripts.tsv`` holds
  ``<speaker>/<utt>.wav<TAB><digits>``.
- ``source``: text-independent speech, ``min_duration``-``max_duration``
  seconds, made of random prompts (syllables for gcin, random English words
  for flite) of the voice joined with short gaps, a random window of them
  kept. The ten digit recordings of the target domain are left out.

Per-utterance variation, so that enrolment and test strings are never the
same samples: tempo x U(0.9, 1.1) (sox ``tempo -s``, pitch kept), gaps
U(``min_gap``, ``max_gap``) s between digits, lead/tail silence U(0.1, 0.3) s,
coloured noise (spectral slope U(0, 1): white to pink) at U(20, 35) dB SNR,
and a random gain (peak at U(0.2, 0.9) of full scale). With
``bandwidth="narrow"`` (default) every utterance is low-passed at 3.8 kHz
(sox ``sinc -3800``), since the asterisk recordings are telephone-band (8 kHz)
and the gcin and flite ones are not: no speaker is told apart by bandwidth.

Limits, to keep in mind when reading results: each voice recorded each digit
once, so all strings of a speaker reuse the same ten recordings (varied as
above); each real voice is one recording session; with the default voices
there are 9 real voices, 4 flite voices and 39 pseudo-speakers; a pseudo-speaker
shares its voice's recordings, so a split that puts ``allison`` in training and
``allison_up3`` in test is easier than one by voice; and source and target use
the same voices unless ``voices`` says otherwise.

Layout written (what ``folder_prepare.py`` / ``shal_prepare.py`` read)::

    DIR/<speaker>/u0001.wav   16 kHz, mono, 16-bit PCM
    DIR/speakers.tsv          speaker voice package language kind shift_cents
    DIR/transcripts.tsv       target domain: <speaker>/<utt>.wav<TAB><digits>
    DIR/.corpus.json          arguments and, per utterance, what was joined

Identical arguments give byte-identical files (``num_workers`` aside); a
complete folder made with identical arguments is reused, not regenerated.

Command line::

    python data_prep/recorded_voices.py --domain target --output_folder DIR [--seed 1]
    python data_prep/recorded_voices.py --domain source --output_folder DIR [--seed 1]
"""
from __future__ import annotations

import argparse
import dataclasses
import functools
import re
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from data_prep.common import (
    CorpusArgumentError, MissingToolError, OneLineParser, check_tools, corpus_summary, domain_rng,
    existing_corpus, float_wav_bytes, run_corpus_cli, sox_float, write_corpus_meta, write_pcm16,
)
from data_prep.synth_digits import DIGIT_WORDS, SOURCE_WORDS
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.simulation import add_noise

VOICES_ROOT = "/usr/share"
SPEAKERS_FILE = "speakers.tsv"
TRANSCRIPTS_FILE = "transcripts.tsv"
DEFAULT_UTTS = {"target": 12, "source": 100}
RUNTIME_ONLY_ARGS = ("num_workers",)
NARROWBAND_HZ = 3800
FRAME = SAMPLE_RATE // 100  # 10 ms frames for trimming
NON_SPEECH = re.compile(r"beep|tone|monkeys|silence|glorious")  # asterisk tones, music, animal sounds
FLITE_WORDS_PER_SECOND = 3.0  # words drawn for a source utterance: seconds * this (flite speaks ~2.5/s)
ZHUYIN_DIGITS = ("ㄌㄧㄥ2", "ㄧ", "ㄦ4", "ㄙㄢ", "ㄙ4", "ㄨ3", "ㄌㄧㄡ4", "ㄑㄧ", "ㄅㄚ", "ㄐㄧㄡ3")


@dataclasses.dataclass(frozen=True)
class Voice:
    """One real voice (or one flite voice) and where its recordings are.

    Arguments
    ---------
    name : str
        Voice id, the speaker id of its unshifted speaker.
    package : str
        Debian package that ships it.
    language : str
        BCP 47 tag of what it speaks.
    kind : str
        ``"recorded"`` (human recordings) or ``"synthetic"`` (flite).
    digit_files : tuple of str
        Recorded: the recordings of 0, 1, ..., 9, relative to the voices root.
    material_glob : str
        Recorded: glob (relative to the voices root) of the source-domain material.
    flite_voice : str
        Synthetic: the ``flite -voice`` name.
    """

    name: str
    package: str
    language: str
    kind: str
    digit_files: Tuple[str, ...] = ()
    material_glob: str = ""
    flite_voice: str = ""


def _asterisk(name: str, package: str, language: str, folder: str, ext: str) -> Voice:
    base = f"asterisk/sounds/{folder}"
    return Voice(name, package, language, "recorded",
                 tuple(f"{base}/digits/{d}.{ext}" for d in range(10)), f"{base}/**/*.{ext}")


def _gcin(name: str, take: int) -> Voice:
    return Voice(name, "gcin-voice", "zh-TW", "recorded",
                 tuple(f"gcin-voice/ogg/{z}/{take}.ogg" for z in ZHUYIN_DIGITS), f"gcin-voice/ogg/*/{take}.ogg")


def _flite(name: str) -> Voice:
    return Voice(f"flite_{name}", "flite", "en", "synthetic", flite_voice=name)


# The catalogue; a voice's position is part of its seeds: append, never reorder.
VOICES: Tuple[Voice, ...] = (
    _asterisk("allison", "asterisk-core-sounds-en-wav", "en-US", "en_US_f_Allison", "wav"),
    _asterisk("june", "asterisk-core-sounds-fr-wav", "fr-CA", "fr_CA_f_June", "wav"),
    _asterisk("carlo", "asterisk-core-sounds-it-wav", "it-IT", "it_IT_m_Carlo", "wav"),
    _asterisk("menardi", "asterisk-prompt-it-menardi-wav", "it-IT", "it_IT_f_Menardi", "wav"),
    _asterisk("ivrvoice", "asterisk-core-sounds-ru-wav", "ru-RU", "ru_RU_f_IvrvoiceRU", "wav"),
    _asterisk("armelle", "asterisk-prompt-fr-armelle", "fr-FR", "fr", "gsm"),
    _asterisk("esco", "asterisk-prompt-es-co", "es-CO", "es", "gsm"),
    _gcin("gcin3", 3),
    _gcin("gcin5", 5),
    _flite("kal"),
    _flite("awb"),
    _flite("rms"),
    _flite("slt"),
)
VOICE_INDEX = {voice.name: i for i, voice in enumerate(VOICES)}
PACKAGES = tuple(dict.fromkeys(voice.package for voice in VOICES))


@dataclasses.dataclass(frozen=True)
class Speaker:
    """A corpus speaker: a voice, shifted by ``shift_cents`` (0 for the real one).

    Example
    -------
    >>> [s.name for s in speakers_of(VOICES[0], 3)]
    ['allison', 'allison_dn3', 'allison_up3', 'allison_dn5']
    """

    name: str
    voice: Voice
    pseudo_index: int  # 0: the voice itself
    shift_cents: int


def pseudo_shift(k: int) -> int:
    """Shift of the ``k``-th pseudo-speaker (from 1) in cents: -300, +300, -500, +500, ...

    Example
    -------
    >>> [pseudo_shift(k) for k in range(1, 6)]
    [-300, 300, -500, 500, -700]
    """
    size = 300 + 200 * ((k - 1) // 2)
    return -size if k % 2 else size


def speakers_of(voice: Voice, pseudo_per_voice: int) -> List[Speaker]:
    """The real speaker of ``voice`` and its ``pseudo_per_voice`` pitch-shifted ones."""
    speakers = [Speaker(voice.name, voice, 0, 0)]
    for k in range(1, pseudo_per_voice + 1):
        shift = pseudo_shift(k)
        speakers.append(Speaker(f"{voice.name}_{'up' if shift > 0 else 'dn'}{abs(shift) // 100}", voice, k, shift))
    return speakers


# ----------------------------------------------------------------- audio in
def trim(signal: np.ndarray) -> np.ndarray:
    """Cut a recording's leading and trailing silence (or noise floor), keeping 20 ms on each side.

    10 ms frames whose RMS level ``L`` (dB) is above ``max(L_peak - 40, min(L_floor + 8, L_peak - 20))``
    are speech, ``L_floor`` being the 10th percentile of the frame levels: the GSM prompts have a noise
    floor about 30 dB below their peak, the wav ones none, and some recordings hardly any silence.

    Example
    -------
    >>> x = np.concatenate([np.zeros(1600), np.ones(800), np.zeros(1600)]).astype(np.float32)
    >>> len(trim(x)) == 800 + 2 * 2 * FRAME
    True
    """
    frames = signal[: len(signal) // FRAME * FRAME].reshape(-1, FRAME)
    level = 10.0 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=1) + 1e-12)
    peak = level.max()
    speech = np.flatnonzero(level > max(peak - 40.0, min(np.percentile(level, 10) + 8.0, peak - 20.0)))
    if not len(speech):
        return signal[:0]
    return signal[max(speech[0] - 2, 0) * FRAME : (speech[-1] + 3) * FRAME]


@functools.lru_cache(maxsize=4096)
def load_recording(path: str) -> np.ndarray:
    """A recording (any format sox reads: wav, gsm, ogg) as float32 at 16 kHz, its silences cut."""
    signal = sox_float([path])
    return trim(signal) if len(signal) >= FRAME and np.abs(signal).max() else signal[:0]


@functools.lru_cache(maxsize=64)
def flite_speech(flite_voice: str, text: str) -> np.ndarray:
    """``text`` spoken by a flite voice, float32 at 16 kHz, its silences cut."""
    flite = subprocess.Popen(["flite", "-voice", flite_voice, "-t", text, "-o", "/dev/stdout"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        signal = sox_float(["-t", "wav", "-"], stdin=flite.stdout, what=f"flite voice {flite_voice}")
    finally:
        flite.stdout.close()
        error = flite.stderr.read()
    if flite.wait():
        raise RuntimeError(f"flite -voice {flite_voice} failed: {error.decode().strip()}")
    return trim(signal)


def digit_recordings(voice: Voice, root: str) -> List[np.ndarray]:
    """The voice's ten digit recordings (0..9), trimmed."""
    if voice.kind == "synthetic":
        return [flite_speech(voice.flite_voice, word) for word in DIGIT_WORDS["en"]]
    return [load_recording(str(Path(root) / rel)) for rel in voice.digit_files]


@functools.lru_cache(maxsize=32)
def material_files(voice: Voice, root: str) -> Tuple[str, ...]:
    """Source-domain recordings of a recorded voice (relative paths, sorted): no digits 0-9, no tones."""
    digits = set(voice.digit_files)
    found = sorted(p.relative_to(root).as_posix() for p in Path(root).glob(voice.material_glob))
    return tuple(rel for rel in found if rel not in digits and not NON_SPEECH.search(rel))


# ---------------------------------------------------------------- utterance
@dataclasses.dataclass(frozen=True)
class Variation:
    """The per-utterance variation (see the module docstring), drawn from the utterance's seed."""

    tempo: float
    lead_s: float
    tail_s: float
    snr_db: float
    noise_colour: float
    peak_level: float
    noise_seed: int


def draw_variation(rng: np.random.Generator) -> Variation:
    """Draw the tempo, margins, noise and gain of one utterance."""
    return Variation(
        tempo=float(rng.uniform(0.9, 1.1)),
        lead_s=float(rng.uniform(0.1, 0.3)),
        tail_s=float(rng.uniform(0.1, 0.3)),
        snr_db=float(rng.uniform(20.0, 35.0)),
        noise_colour=float(rng.uniform(0.0, 1.0)),
        peak_level=float(rng.uniform(0.2, 0.9)),
        noise_seed=int(rng.integers(0, 2**31)),
    )


def join(pieces: Sequence[np.ndarray], gaps_s: Sequence[float]) -> np.ndarray:
    """``pieces[0]``, ``gaps_s[0]`` seconds of silence, ``pieces[1]``, ...: float32.

    Example
    -------
    >>> len(join([np.ones(3, np.float32), np.ones(2, np.float32)], [1 / SAMPLE_RATE]))
    6
    """
    parts = [pieces[0]]
    for gap, piece in zip(gaps_s, pieces[1:]):
        parts += [np.zeros(int(round(gap * SAMPLE_RATE)), np.float32), piece]
    return np.concatenate(parts).astype(np.float32)


def vary(speech: np.ndarray, speaker: Speaker, variation: Variation, narrowband: bool,
         crop_s: Optional[float] = None, crop_rng: Optional[np.random.Generator] = None) -> np.ndarray:
    """Pitch shift (pseudo-speakers), tempo, band limit, crop, margins, noise and gain: float64.

    With ``crop_s`` a random window (``crop_rng``) of that length minus the
    margins is kept, faded out over its last 20 ms.
    """
    effects = (["pitch", str(speaker.shift_cents)] if speaker.shift_cents else [])
    effects += ["tempo", "-s", f"{variation.tempo:.4f}"]
    effects += ["sinc", f"-{NARROWBAND_HZ}"] if narrowband else []
    signal = sox_float(["-t", "wav", "-"], effects, stdin=float_wav_bytes(speech),
                       what=f"the variation of a {speaker.name} utterance").astype(np.float64)
    lead, tail = int(variation.lead_s * SAMPLE_RATE), int(variation.tail_s * SAMPLE_RATE)
    if crop_s is not None:
        keep = max(int(crop_s * SAMPLE_RATE) - lead - tail, 1)
        start = int(crop_rng.integers(0, max(len(signal) - keep, 0) + 1))
        signal = signal[start:start + keep].copy()
        fade = min(len(signal), int(0.02 * SAMPLE_RATE))
        signal[len(signal) - fade:] *= np.linspace(1.0, 0.0, fade)
    signal = np.concatenate([np.zeros(lead), signal, np.zeros(tail)])
    noisy = add_noise(signal, variation.snr_db, variation.noise_colour, np.random.default_rng(variation.noise_seed))
    return noisy * (variation.peak_level / np.abs(noisy).max())


def target_utterance(speaker: Speaker, args: Dict, utt_index: int) -> Tuple[np.ndarray, Dict]:
    """A random digit string of ``speaker``; returns the signal and what went into it."""
    rng = domain_rng(args["seed"], "target", VOICE_INDEX[speaker.voice.name], speaker.pseudo_index, utt_index)
    digits = rng.integers(0, 10, size=int(rng.integers(args["min_digits"], args["max_digits"] + 1)))
    gaps = rng.uniform(args["min_gap"], args["max_gap"], size=len(digits) - 1)
    variation = draw_variation(rng)
    recordings = digit_recordings(speaker.voice, args["voices_root"])
    signal = vary(join([recordings[d] for d in digits], gaps), speaker, variation, args["bandwidth"] == "narrow")
    return signal, {"digits": "".join(map(str, digits)), **_rounded(variation)}


def source_utterance(speaker: Speaker, args: Dict, utt_index: int) -> Tuple[np.ndarray, Dict]:
    """A text-independent utterance of ``speaker``; returns the signal and what went into it."""
    rng = domain_rng(args["seed"], "source", VOICE_INDEX[speaker.voice.name], speaker.pseudo_index, utt_index)
    crop_s = float(rng.uniform(args["min_duration"], args["max_duration"]))
    variation = draw_variation(rng)
    needed = (crop_s - variation.lead_s - variation.tail_s) * variation.tempo * SAMPLE_RATE
    voice, pieces, gaps, used = speaker.voice, [], [], []
    if voice.kind == "synthetic":
        words, drawn = SOURCE_WORDS["en"], []
        while not pieces or len(pieces[0]) < 1.05 * needed:  # more words until long enough (rare)
            drawn += [words[i] for i in rng.integers(0, len(words), size=int(np.ceil(crop_s * FLITE_WORDS_PER_SECOND)))]
            pieces, used = [flite_speech(voice.flite_voice, " ".join(drawn))], [" ".join(drawn)]
    else:
        files, draws = material_files(voice, args["voices_root"]), 0
        while sum(map(len, pieces)) + SAMPLE_RATE * sum(gaps) < needed:
            draws += 1
            if draws > 100 * len(files):
                raise RuntimeError(f"the recordings of voice {voice.name} are all shorter than 0.1 s")
            rel = files[int(rng.integers(len(files)))]
            recording = load_recording(str(Path(args["voices_root"]) / rel))
            if len(recording) < 0.1 * SAMPLE_RATE:
                continue
            if pieces:
                gaps.append(float(rng.uniform(0.05, 0.2)))
            pieces.append(recording)
            used.append(rel)
    signal = vary(join(pieces, gaps), speaker, variation, args["bandwidth"] == "narrow", crop_s, rng)
    return signal, {"pieces": used, **_rounded(variation)}


def _rounded(variation: Variation) -> Dict:
    return {k: round(v, 3) if isinstance(v, float) else v
            for k, v in dataclasses.asdict(variation).items() if k != "noise_seed"}


def render_speaker(job: Tuple[Speaker, Dict, str]) -> Dict[str, Dict]:
    """Write every utterance of one speaker; return ``{<speaker>/<utt>: info}`` (``duration`` in s).

    ``job`` is ``(speaker, corpus arguments, output folder)``, a tuple so
    that it pickles into a process pool.
    """
    speaker, args, folder = job
    make = target_utterance if args["domain"] == "target" else source_utterance
    done = {}
    for u in range(1, args["utts_per_speaker"] + 1):
        signal, info = make(speaker, args, u)
        key = f"{speaker.name}/u{u:04d}"
        write_pcm16(Path(folder) / f"{key}.wav", signal)
        done[key] = {"duration": round(len(signal) / SAMPLE_RATE, 4), **info}
    return done


# ------------------------------------------------------------------ corpus
def validate_arguments(args: Dict) -> None:
    """Raise ``CorpusArgumentError`` (one line) for nonsense corpus arguments."""
    unknown = [v for v in args["voices"] if v not in VOICE_INDEX]
    checks = [
        (args["domain"] in DEFAULT_UTTS, f"domain must be one of {sorted(DEFAULT_UTTS)}"),
        (not unknown, f"unknown voices {unknown}; choose among {', '.join(VOICE_INDEX)}"),
        (len(args["voices"]) >= 1, "choose at least one voice"),
        (len(set(args["voices"])) == len(args["voices"]), "a voice is named twice in voices"),
        (args["pseudo_per_voice"] >= 0, "pseudo_per_voice must be >= 0"),
        (args["utts_per_speaker"] >= 1, "utts_per_speaker must be >= 1"),
        (args["seed"] >= 0, "seed must be >= 0"),
        (args["min_digits"] >= 1, "min_digits must be >= 1"),
        (args["max_digits"] >= args["min_digits"], "max_digits must be >= min_digits"),
        (0 <= args["min_gap"] <= args["max_gap"], "need 0 <= min_gap <= max_gap"),
        (args["min_duration"] > 0.7, "min_duration must be > 0.7 s (the margins take up to 0.6 s)"),
        (args["max_duration"] >= args["min_duration"], "max_duration must be >= min_duration"),
        (args["bandwidth"] in ("narrow", "full"), "bandwidth must be narrow or full"),
        (args["num_workers"] >= 1, "num_workers must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise CorpusArgumentError(message)


def voice_available(voice: Voice, root: str, domain: str) -> bool:
    """True if the voice's package data is installed (under ``root``; flite: the program and voice)."""
    if voice.kind == "synthetic":
        return _flite_voices() is not None and voice.flite_voice in _flite_voices()
    if domain == "source":
        return bool(material_files(voice, root))
    return all((Path(root) / rel).is_file() for rel in voice.digit_files)


@functools.lru_cache(maxsize=1)
def _flite_voices() -> Optional[Tuple[str, ...]]:
    try:
        out = subprocess.run(["flite", "-lv"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return tuple(out.split(":", 1)[-1].split())


def check_voices(voices: Sequence[Voice], root: str, domain: str) -> None:
    """Raise ``MissingToolError`` (one line) naming the packages whose data is missing."""
    missing = list(dict.fromkeys(v.package for v in voices if not voice_available(v, root, domain)))
    if missing:
        raise MissingToolError(
            f"no data of {', '.join(missing)} under {root}: install with `apt-get install {' '.join(missing)}` "
            "(as root, or run scripts/system_deps.sh), or leave those voices out with --voices"
        )


def corpus_speakers(args: Dict) -> List[Speaker]:
    """Every speaker of the corpus, voice by voice."""
    return [s for name in args["voices"] for s in speakers_of(VOICES[VOICE_INDEX[name]], args["pseudo_per_voice"])]


def _speaker_rows(speakers: Sequence[Speaker]) -> str:
    lines = ["speaker\tvoice\tpackage\tlanguage\tkind\tshift_cents"]
    lines += [f"{s.name}\t{s.voice.name}\t{s.voice.package}\t{s.voice.language}\t{s.voice.kind}\t{s.shift_cents}"
              for s in speakers]
    return "\n".join(lines) + "\n"


def _generate(folder: Path, args: Dict, num_workers: int) -> Dict:
    """Render the corpus into ``folder``; return its ``.corpus.json`` metadata (written last, complete)."""
    speakers = corpus_speakers(args)
    meta = {"arguments": args, "complete": False, "utterances": {},
            "speakers": {s.name: {"voice": s.voice.name, "package": s.voice.package, "language": s.voice.language,
                                  "kind": s.voice.kind, "shift_cents": s.shift_cents} for s in speakers}}
    write_corpus_meta(folder, meta)
    with atomic_write(folder / SPEAKERS_FILE) as f:
        f.write(_speaker_rows(speakers))
    jobs = [(s, args, str(folder)) for s in speakers]
    bar = dict(total=len(jobs), desc=f"recorded_voices {args['domain']}", unit="spk", mininterval=1.0)
    if num_workers == 1:
        results = [render_speaker(job) for job in tqdm(jobs, **bar)]
    else:
        with ProcessPoolExecutor(max_workers=num_workers) as pool:
            results = list(tqdm(pool.map(render_speaker, jobs), **bar))
    for done in results:
        meta["utterances"].update(done)
    if args["domain"] == "target":
        with atomic_write(folder / TRANSCRIPTS_FILE) as f:
            f.writelines(f"{key}.wav\t{info['digits']}\n" for key, info in meta["utterances"].items())
    meta["complete"] = True
    write_corpus_meta(folder, meta)
    return meta


def make_corpus(
    output_folder: str,
    domain: str = "target",
    voices: Optional[Sequence[str]] = None,
    pseudo_per_voice: int = 3,
    utts_per_speaker: Optional[int] = None,
    seed: int = 1234,
    min_digits: int = 4,
    max_digits: int = 8,
    min_gap: float = 0.05,
    max_gap: float = 0.25,
    min_duration: float = 1.5,
    max_duration: float = 4.0,
    bandwidth: str = "narrow",
    voices_root: str = VOICES_ROOT,
    num_workers: int = 2,
) -> Dict:
    """Write a corpus of recorded voices as ``output_folder/<speaker>/<utt>.wav``.

    Arguments
    ---------
    output_folder : str
        Corpus root; must be new, empty, or a corpus made by this function.
    domain : str
        ``"target"`` (digit strings) or ``"source"`` (text-independent).
    voices : list of str or None
        Voice names (see ``VOICES``); None: all of them.
    pseudo_per_voice : int
        Pitch-shifted pseudo-speakers per voice (``speakers.tsv`` marks them).
    utts_per_speaker : int or None
        None: 12 (target) or 100 (source).
    seed : int
        Seed (>= 0); identical arguments give byte-identical files.
    min_digits, max_digits : int
        Digit-string length range (target).
    min_gap, max_gap : float
        Silence between digits, seconds (target).
    min_duration, max_duration : float
        Utterance duration range, seconds (source).
    bandwidth : str
        ``"narrow"`` (low-pass at 3.8 kHz, every voice alike) or ``"full"``.
    voices_root : str
        Where the packages' data is (``/usr/share``).
    num_workers : int
        Worker processes.

    Returns
    -------
    summary : dict
        ``output_folder``, ``num_speakers``, ``num_utterances``,
        ``min_duration``/``max_duration`` (s), ``total_hours``, ``seconds``,
        ``reused``, and ``num_real_speakers`` (recorded voices, unshifted).
    """
    args = dict(
        domain=domain, voices=list(voices) if voices else [v.name for v in VOICES],
        pseudo_per_voice=pseudo_per_voice,
        utts_per_speaker=DEFAULT_UTTS.get(domain, 1) if utts_per_speaker is None else utts_per_speaker,
        seed=seed, min_digits=min_digits, max_digits=max_digits, min_gap=min_gap, max_gap=max_gap,
        min_duration=min_duration, max_duration=max_duration, bandwidth=bandwidth,
        voices_root=str(voices_root),
    )
    validate_arguments({**args, "num_workers": num_workers})
    start = time.perf_counter()
    folder = Path(output_folder)
    meta = existing_corpus(folder, args)
    reused = meta is not None
    if reused:
        print(f"recorded_voices: reusing the corpus in {folder} (same arguments)")
    else:
        check_tools(["sox"], "the recorded-voice corpus needs sox; install it with `apt-get install sox` (as root)")
        check_voices([VOICES[VOICE_INDEX[name]] for name in args["voices"]], args["voices_root"], domain)
        meta = _generate(folder, args, num_workers)
    summary = corpus_summary(folder, meta, time.perf_counter() - start, reused)
    summary["num_real_speakers"] = sum(s["kind"] == "recorded" and not s["shift_cents"]
                                       for s in meta["speakers"].values())
    if not reused:
        print(f"recorded_voices: wrote {summary['num_utterances']} {domain} utterances of "
              f"{summary['num_speakers']} speakers ({summary['num_real_speakers']} real voices; "
              f"{summary['min_duration']:.2f}-{summary['max_duration']:.2f} s, "
              f"{summary['total_hours']:.2f} h) to {folder} in {summary['seconds']:.1f} s")
    return summary


def _voice_list(text: str) -> List[str]:
    """Parse ``"allison,gcin3"`` (argparse ``type``)."""
    return [name.strip() for name in text.split(",") if name.strip()]


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = OneLineParser(
        prog="recorded_voices.py",
        description="Build a multi-speaker corpus (DIR/<speaker>/<utt>.wav, 16 kHz mono) from recorded voices "
        "shipped by Debian packages (asterisk prompts, gcin-voice, flite): digit strings (target) or "
        "text-independent speech (source). Writes speakers.tsv (real vs pitch-shifted pseudo-speakers) and, "
        "for the target domain, transcripts.tsv.",
        epilog="voices: " + ", ".join(f"{v.name} ({v.language}, {v.package})" for v in VOICES),
    )
    parser.add_argument("--output_folder", required=True, help="corpus root DIR")
    parser.add_argument("--domain", choices=sorted(DEFAULT_UTTS), default="target",
                        help="target: digit strings + transcripts.tsv; source: text-independent speech")
    parser.add_argument("--voices", type=_voice_list, default=None,
                        help="comma-separated voice names (default: all; see the list below)")
    parser.add_argument("--pseudo_per_voice", type=int, default=3,
                        help="pitch/formant-shifted pseudo-speakers per voice (sox pitch -300, +300, -500 cents...)")
    parser.add_argument("--utts_per_speaker", type=int, default=None, help="default: 12 target, 100 source")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--min_digits", type=int, default=4, help="target domain")
    parser.add_argument("--max_digits", type=int, default=8, help="target domain")
    parser.add_argument("--min_gap", type=float, default=0.05, help="target: silence between digits, s")
    parser.add_argument("--max_gap", type=float, default=0.25, help="target: silence between digits, s")
    parser.add_argument("--min_duration", type=float, default=1.5, help="source domain, seconds")
    parser.add_argument("--max_duration", type=float, default=4.0, help="source domain, seconds")
    parser.add_argument("--bandwidth", choices=("narrow", "full"), default="narrow",
                        help="narrow: low-pass every utterance at 3.8 kHz (the asterisk voices are telephone-band)")
    parser.add_argument("--voices_root", default=VOICES_ROOT, help="where the packages' data is installed")
    parser.add_argument("--num_workers", type=int, default=2)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Command-line entry point; returns the summary of ``make_corpus``."""
    return run_corpus_cli(build_parser(), make_corpus, argv)


if __name__ == "__main__":
    main()
