"""Built-in, offline, multi-speaker short-utterance corpus made with espeak-ng.

No real corpus can be downloaded by the demo, the tests or the benchmarks, so
this module synthesises one: every speaker is an espeak-ng voice *variant*
with its own seeded pitch, speed, formants (vocal-tract length and timbre),
breathiness, voicing, flutter, roughness and tone; every utterance gets its
own speed/pitch/word-gap jitter, a random channel colouring, a mild
synthetic reverb and a little noise, so that speakers are distinct but not
trivially separable.

Two domains mirror the paper's pre-train -> transfer setup:

- ``target`` (default): speakers ``tgt0001``, ``tgt0002``, ... saying random
  Mandarin digit strings of ``min_digits``-``max_digits`` digits (voice
  ``cmn-latn-pinyin`` fed with pinyin, e.g. ``yi1 er4 san1``; the plain
  ``cmn`` voice of espeak-ng 1.51 misreads 1 3 4 6 7 8); ``lang="en"`` says
  English digit words instead.
- ``source``: speakers ``src0001``, ... reading text-independent random word
  sequences (English by default, Mandarin syllables with ``lang="zh"``)
  cropped to ``min_duration``-``max_duration`` seconds.

Layout written (what the speaker-folder data prep reads)::

    DIR/<speaker>/u0001.wav      16 kHz, mono, 16-bit PCM
    DIR/transcripts.tsv          target domain: <speaker>/u0001.wav<TAB>the digits said (e.g. 0417)
    DIR/.corpus.json             arguments, voice parameters, utterance texts
    DIR/.espeak-ng-data/         espeak-ng data + one voices/!v/<speaker> file

Output is byte-identical for identical arguments (``num_workers`` aside), and
a complete folder made with identical arguments is reused, not regenerated.
Requires the Debian packages ``espeak-ng`` and ``sox``.

Command line::

    python data_prep/synth_digits.py --output_folder DIR --num_speakers 40 \\
        --utts_per_speaker 30 --lang zh --seed 1234 [--domain target]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import subprocess
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from data_prep.common import (
    CORPUS_FILE, CorpusArgumentError, OneLineParser, check_tools, corpus_summary, domain_rng,
    existing_corpus, run_corpus_cli, sox_float, write_corpus_meta, write_pcm16,
)
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.simulation import add_noise, fft_size, room_impulse_response

TRANSCRIPTS_FILE = "transcripts.tsv"  # what data_prep.common.read_transcripts reads
ESPEAK_DIR = ".espeak-ng-data"
REQUIRED_TOOLS = ("espeak-ng", "sox")
INSTALL_HINT = ("the built-in corpus needs espeak-ng and sox; "
                "install them with `apt-get install espeak-ng sox` (as root)")

DOMAINS = {"target": "tgt", "source": "src"}  # domain -> speaker name prefix, in CORPUS_DOMAINS order
DEFAULT_LANG = {"target": "zh", "source": "en"}
ESPEAK_VOICES = {"zh": "cmn-latn-pinyin", "en": "en-us"}
ESPEAK_DICTS = {"zh": "cmn_dict", "en": "en_dict"}
ESPEAK_SHARED_DATA = ("phondata", "phonindex", "phontab", "intonations", "lang")

DIGIT_WORDS = {
    "zh": ("ling2", "yi1", "er4", "san1", "si4", "wu3", "liu4", "qi1", "ba1", "jiu3"),
    "en": ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"),
}
SOURCE_WORDS = {
    "en": (
        "the people who live near the river often walk to the old market in "
        "the morning and buy fresh bread fruit fish and warm coffee before "
        "work while children play games under tall green trees and a small "
        "dog watches the boats move slowly past the bridge toward the city "
        "where new buildings stand beside quiet streets full of shops music "
        "teachers doctors friends and families talking about weather travel "
        "stories books holidays gardens trains dinner tomorrow yesterday "
        "always never sometimes bright dark heavy light simple strong happy"
    ).split(),
    "zh": (
        "ni3 hao3 wo3 men5 shi4 zhong1 guo2 ren2 xue2 sheng1 lao3 shi1 peng2 "
        "you3 jia1 ting2 gong1 zuo4 tian1 qi4 ming2 jin1 zuo2 chi1 fan4 he1 "
        "cha2 shui3 kan4 shu1 xie3 zi4 shuo1 hua4 ting1 yin1 yue4 mai3 dong1 "
        "xi5 qu4 lai2 zou3 lu4 kai1 che1 fei1 ji1 huo3 che1 shan1 he2 hai3 "
        "hua1 cao3 shu4 niao3 yu2 ma3 niu2 yang2 gou3 mao1 ri4 yue4 xing1 "
        "feng1 yu3 xue3 yun2 cheng2 shi4 xiao3 da4 hao3 kuai4 man4 gao1 chang2"
    ).split(),
}
SOURCE_TEXT_MARGIN = 1.3  # words drawn / words needed at the planned speed

RUNTIME_ONLY_ARGS = ("num_workers",)


@dataclasses.dataclass(frozen=True)
class SpeakerVoice:
    """Seeded voice parameters of one synthetic speaker.

    Percentages are relative to espeak-ng's default voice (100 = unchanged);
    see espeak-ng's ``docs/voices.md`` for the meaning of each attribute.

    Arguments
    ---------
    name : str
        Speaker id, also the name of the espeak-ng variant file.
    gender : str
        ``"male"`` or ``"female"``.
    pitch : tuple of int
        Base pitch and top of the pitch range, Hz.
    speed : int
        Base speaking rate, words per minute (espeak-ng ``-s``).
    formants : tuple of tuple of int
        For formants 0-8: (frequency, strength, width), percent.
    breath : tuple of int
        Breath noise strength at formants 1-8 (0 = none).
    voicing : int
        Strength of voiced sounds, percent.
    flutter : int
        Pitch wavering.
    roughness : int
        Creakiness, 0-7.
    consonants : tuple of int
        Strength of unvoiced / voiced consonant noise, percent.
    tone : tuple of int
        Amplitudes (0-255) of the voiced-sound frequency response at 600,
        1200 and 2000 Hz.
    """

    name: str
    gender: str
    pitch: Tuple[int, int]
    speed: int
    formants: Tuple[Tuple[int, int, int], ...]
    breath: Tuple[int, ...]
    voicing: int
    flutter: int
    roughness: int
    consonants: Tuple[int, int]
    tone: Tuple[int, int, int]

    def variant_text(self) -> str:
        """Return the espeak-ng variant file (``voices/!v/<name>``) text.

        Example
        -------
        >>> voice = draw_voice(seed=1, domain="target", index=1)
        >>> voice.variant_text().splitlines()[:2]
        ['language variant', 'name tgt0001']
        """
        lines = [
            "language variant",
            f"name {self.name}",
            f"gender {self.gender}",
            f"pitch {self.pitch[0]} {self.pitch[1]}",
        ]
        lines += [f"formant {k} {f} {s} {w}" for k, (f, s, w) in enumerate(self.formants)]
        lines += [
            "breath " + " ".join(map(str, self.breath)),
            f"voicing {self.voicing}",
            f"flutter {self.flutter}",
            f"roughness {self.roughness}",
            f"consonants {self.consonants[0]} {self.consonants[1]}",
            "tone " + " ".join(f"{hz} {a}" for hz, a in zip((600, 1200, 2000), self.tone)),
        ]
        return "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True)
class UtterancePlan:
    """Everything needed to render one utterance, drawn from its own seed.

    Arguments
    ---------
    speaker : str
        Speaker id (voice variant name).
    name : str
        Utterance file stem, e.g. ``u0001``.
    voice : str
        espeak-ng voice, e.g. ``cmn-latn-pinyin+tgt0001``.
    text : str
        Text given to espeak-ng.
    speed : int
        Words per minute.
    pitch : int
        espeak-ng pitch adjustment, 0-99.
    word_gap : int
        Extra pause between words, units of 10 ms.
    crop_s : float or None
        Final duration in seconds (source domain), None to keep all speech.
    lead_s, tail_s : float
        Silence kept before and after the speech, seconds.
    tilt_db_per_octave : float
        Channel colouring: spectral tilt around 1 kHz.
    peak_hz, peak_db : float
        Channel colouring: a one-octave-wide resonance (or notch if < 0).
    highpass_hz, lowpass_hz : float
        Channel colouring: band limits (second-order magnitude roll-offs).
    rt60_s : float
        Reverberation time of the synthetic room impulse response.
    drr_db : float
        Direct-to-reverberant energy ratio.
    snr_db : float
        Speech-to-noise ratio of the added noise.
    noise_colour : float
        Noise power spectrum slope: 0 white, 1 pink.
    peak_level : float
        Final peak amplitude, fraction of full scale.
    noise_seed : int
        Seed of the reverb tail and noise samples.
    """

    speaker: str
    name: str
    voice: str
    text: str
    speed: int
    pitch: int
    word_gap: int
    crop_s: Optional[float]
    lead_s: float
    tail_s: float
    tilt_db_per_octave: float
    peak_hz: float
    peak_db: float
    highpass_hz: float
    lowpass_hz: float
    rt60_s: float
    drr_db: float
    snr_db: float
    noise_colour: float
    peak_level: float
    noise_seed: int


def speaker_name(domain: str, index: int) -> str:
    """Return the speaker id of the ``index``-th (from 1) speaker of a domain.

    Example
    -------
    >>> speaker_name("target", 7), speaker_name("source", 12)
    ('tgt0007', 'src0012')
    """
    return f"{DOMAINS[domain]}{index:04d}"


def draw_voice(seed: int, domain: str, index: int) -> SpeakerVoice:
    """Draw the voice of the ``index``-th speaker (from 1) of a domain.

    A speaker's voice depends only on ``(seed, domain, index)``, so adding
    speakers does not change the existing ones.

    Example
    -------
    >>> draw_voice(1234, "target", 3) == draw_voice(1234, "target", 3)
    True
    >>> draw_voice(1234, "target", 3) == draw_voice(1234, "target", 4)
    False
    """
    rng = domain_rng(seed, domain, index)
    female = bool(rng.random() < 0.5)
    base_pitch = int(rng.uniform(140, 230) if female else rng.uniform(70, 130))
    tract = rng.uniform(102, 122) if female else rng.uniform(86, 106)  # formant scale, %
    formants = tuple(
        (
            int(round(tract * rng.uniform(0.95, 1.05))) if k else int(rng.uniform(85, 120)),
            int(rng.uniform(70, 130)),
            int(rng.uniform(70, 160)),
        )
        for k in range(9)
    )
    breathy = rng.random() < 0.3
    return SpeakerVoice(
        name=speaker_name(domain, index),
        gender="female" if female else "male",
        pitch=(base_pitch, base_pitch + int(rng.uniform(25, 100))),
        speed=int(rng.uniform(140, 200)),
        formants=formants,
        breath=tuple(int(b) for b in rng.integers(0, 7 if breathy else 1, size=8)),
        voicing=int(rng.uniform(75, 130)),
        flutter=int(rng.uniform(0, 25)),
        roughness=int(rng.integers(0, 6)),
        consonants=(int(rng.uniform(70, 140)), int(rng.uniform(70, 140))),
        tone=tuple(int(a) for a in rng.uniform(80, 230, size=3)),
    )


def _draw_text(
    rng: np.random.Generator,
    domain: str,
    lang: str,
    digit_range: Tuple[int, int],
    crop_s: Optional[float],
    speed: int,
) -> str:
    """Draw a digit string (target) or a random word sequence (source)."""
    if domain == "target":
        digits = rng.integers(0, 10, size=int(rng.integers(digit_range[0], digit_range[1] + 1)))
        return " ".join(DIGIT_WORDS[lang][d] for d in digits)
    words = SOURCE_WORDS[lang]
    count = math.ceil(crop_s * speed / 60.0 * SOURCE_TEXT_MARGIN)
    return " ".join(words[i] for i in rng.integers(0, len(words), size=count))


def draw_utterance(
    voice: SpeakerVoice,
    seed: int,
    domain: str,
    lang: str,
    speaker_index: int,
    utt_index: int,
    digit_range: Tuple[int, int],
    duration_range: Tuple[float, float],
) -> UtterancePlan:
    """Draw the text, prosody jitter and augmentation of one utterance.

    Example
    -------
    >>> voice = draw_voice(1234, "target", 1)
    >>> plan = draw_utterance(voice, 1234, "target", "zh", 1, 1, (3, 3), (3.0, 6.0))
    >>> len(plan.text.split()), plan.voice
    (3, 'cmn-latn-pinyin+tgt0001')
    """
    rng = domain_rng(seed, domain, speaker_index, utt_index)
    crop_s = float(rng.uniform(*duration_range)) if domain == "source" else None
    speed = int(voice.speed * rng.uniform(0.9, 1.1))
    return UtterancePlan(
        speaker=voice.name,
        name=f"u{utt_index:04d}",
        voice=f"{ESPEAK_VOICES[lang]}+{voice.name}",
        text=_draw_text(rng, domain, lang, digit_range, crop_s, speed),
        speed=speed,
        pitch=int(rng.integers(40, 61)),
        word_gap=int(rng.integers(0, 3)),
        crop_s=crop_s,
        lead_s=float(rng.uniform(0.05, 0.2)),
        tail_s=float(rng.uniform(0.05, 0.2)),
        tilt_db_per_octave=float(rng.uniform(-1.5, 1.5)),
        peak_hz=float(np.exp(rng.uniform(np.log(300), np.log(4000)))),
        peak_db=float(rng.uniform(-4, 4)),
        highpass_hz=float(rng.uniform(40, 200)),
        lowpass_hz=float(rng.uniform(4000, 8000)),
        rt60_s=float(rng.uniform(0.1, 0.5)),
        drr_db=float(rng.uniform(4, 15)),
        snr_db=float(rng.uniform(15, 35)),
        noise_colour=float(rng.uniform(0, 1)),
        peak_level=float(rng.uniform(0.3, 0.9)),
        noise_seed=int(rng.integers(0, 2**31)),
    )


def espeak_data_path() -> Path:
    """Return the system espeak-ng data folder (printed by ``--version``)."""
    out = subprocess.run(["espeak-ng", "--version"], capture_output=True, text=True, check=True)
    return Path(out.stdout.split("Data at:")[1].strip())


def write_espeak_data(folder: Path, lang: str, voices: Sequence[SpeakerVoice]) -> Path:
    """Copy the espeak-ng data needed for ``lang`` and write the voice variants.

    Returns the folder to pass as ``espeak-ng --path``.
    """
    system = espeak_data_path()
    folder.mkdir(parents=True, exist_ok=True)
    for name in (*ESPEAK_SHARED_DATA, ESPEAK_DICTS[lang]):
        src, dst = system / name, folder / name
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copyfile(src, dst)
    for voice in voices:
        with atomic_write(folder / "voices" / "!v" / voice.name) as f:
            f.write(voice.variant_text())
    return folder


def run_espeak(plan: UtterancePlan, espeak_path: Path) -> np.ndarray:
    """Synthesise ``plan.text``; return float32 samples at 16 kHz, mono."""
    espeak = subprocess.Popen(
        ["espeak-ng", f"--path={espeak_path}", "-v", plan.voice, "-s", str(plan.speed),
         "-p", str(plan.pitch), "-g", str(plan.word_gap), "--stdout", plan.text],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    what = f"the speech synthesis of {plan.speaker}/{plan.name}"
    try:
        signal = sox_float(["-v", "0.5", "-t", "wav", "-"], stdin=espeak.stdout, what=what)
    finally:
        espeak.stdout.close()
        espeak_err = espeak.stderr.read()
    if espeak.wait():
        raise RuntimeError(f"espeak-ng failed in {what}: {espeak_err.decode().strip()}")
    return signal


def trim_and_pad(signal: np.ndarray, plan: UtterancePlan) -> np.ndarray:
    """Cut espeak-ng's silences, crop (source domain), add the planned margins."""
    active = np.flatnonzero(np.abs(signal) > 0.01 * np.abs(signal).max())
    speech = signal[active[0] : active[-1] + 1]
    lead, tail = int(plan.lead_s * SAMPLE_RATE), int(plan.tail_s * SAMPLE_RATE)
    if plan.crop_s is not None:
        speech = speech[: max(int(plan.crop_s * SAMPLE_RATE) - lead - tail, 1)].copy()
        fade = min(len(speech), int(0.02 * SAMPLE_RATE))
        speech[len(speech) - fade :] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return np.concatenate(
        [np.zeros(lead, np.float32), speech, np.zeros(tail, np.float32)]
    ).astype(np.float64)


def channel_response(freqs: np.ndarray, plan: UtterancePlan) -> np.ndarray:
    """Return the magnitude response of the planned channel at ``freqs`` (Hz).

    Tilt (dB/octave around 1 kHz) + a one-octave Gaussian peak or notch +
    second-order high-pass and low-pass roll-offs; computed on a 1025-point
    grid and interpolated, as it is smooth.
    """
    grid = np.linspace(0.0, SAMPLE_RATE / 2, 1025)
    octaves = np.log2(np.maximum(grid, 50.0) / 1000.0)
    peak_octaves = np.log2(np.maximum(grid, 50.0) / plan.peak_hz)
    gain_db = plan.tilt_db_per_octave * octaves + plan.peak_db * np.exp(-0.5 * peak_octaves**2)
    f = np.maximum(grid, 1.0)
    highpass = 1.0 / np.sqrt(1.0 + (plan.highpass_hz / f) ** 4)
    lowpass = 1.0 / np.sqrt(1.0 + (f / plan.lowpass_hz) ** 4)
    return np.interp(freqs, grid, 10.0 ** (gain_db / 20.0) * highpass * lowpass)


def augment(signal: np.ndarray, plan: UtterancePlan) -> np.ndarray:
    """Apply the planned channel colouring, reverb, noise and level."""
    rng = np.random.default_rng(plan.noise_seed)
    rir = room_impulse_response(plan.rt60_s, plan.drr_db, rng)
    size = fft_size(len(signal) + len(rir) - 1)
    spectrum = np.fft.rfft(signal, size) * np.fft.rfft(rir, size)
    spectrum *= channel_response(np.fft.rfftfreq(size, 1.0 / SAMPLE_RATE), plan)
    wet = np.fft.irfft(spectrum, size)[: len(signal)]
    noisy = add_noise(wet, plan.snr_db, plan.noise_colour, rng)
    return noisy * (plan.peak_level / np.abs(noisy).max())


def render_utterance(job: Tuple[UtterancePlan, str, str]) -> Tuple[str, float]:
    """Synthesise, augment and atomically write one utterance.

    Arguments
    ---------
    job : tuple
        ``(plan, espeak_path, output_folder)``; a tuple so that it pickles
        into a process pool.

    Returns
    -------
    key : str
        ``<speaker>/<utterance>``.
    duration : float
        Seconds.
    """
    plan, espeak_path, output_folder = job
    signal = augment(trim_and_pad(run_espeak(plan, Path(espeak_path)), plan), plan)
    write_pcm16(Path(output_folder) / plan.speaker / f"{plan.name}.wav", signal)
    return f"{plan.speaker}/{plan.name}", len(signal) / SAMPLE_RATE


def say_digits(corpus_folder: Path, speaker: str, digits: str, output_folder: Path, take: int = 1) -> Path:
    """Render ``digits`` (e.g. ``"407213"``) in the voice of ``speaker`` of a target-domain corpus made here.

    The utterance is drawn as the corpus draws its own (prosody jitter, channel, reverb, noise), as utterance
    ``utts_per_speaker + take`` of that speaker, so it is a new recording of a known voice; only the text is
    given. Written to ``output_folder/<speaker>/say<take>.wav``, which is returned.

    Example (needs espeak-ng): ``say_digits(Path("corpus/target"), "tgt0031", "407213", Path("claims"))``.
    """
    meta = json.loads((Path(corpus_folder) / CORPUS_FILE).read_text())
    arguments = meta["arguments"]
    if arguments["domain"] != "target" or speaker not in meta["speakers"] or not digits.isdigit():
        raise CorpusArgumentError(f"{corpus_folder}: cannot say {digits!r} as {speaker!r} (a target-domain "
                                  f"speaker of this corpus and a digit string are needed)")
    index = list(meta["speakers"]).index(speaker) + 1
    voice = draw_voice(arguments["seed"], arguments["domain"], index)
    plan = draw_utterance(voice, arguments["seed"], arguments["domain"], arguments["lang"], index,
                          arguments["utts_per_speaker"] + take, (len(digits), len(digits)), (0.0, 0.0))
    plan = dataclasses.replace(plan, name=f"say{take}", text=" ".join(DIGIT_WORDS[arguments["lang"]][int(d)]
                                                                       for d in digits))
    render_utterance((plan, str(Path(corpus_folder) / ESPEAK_DIR), str(output_folder)))
    return Path(output_folder) / speaker / f"{plan.name}.wav"


def validate_arguments(args: Dict) -> None:
    """Raise ``CorpusArgumentError`` (one line) for nonsense corpus arguments."""
    checks = [
        (args["num_speakers"] >= 1, "num_speakers must be >= 1"),
        (args["utts_per_speaker"] >= 1, "utts_per_speaker must be >= 1"),
        (args["domain"] in DOMAINS, f"domain must be one of {sorted(DOMAINS)}"),
        (args["lang"] in ESPEAK_VOICES, f"lang must be one of {sorted(ESPEAK_VOICES)}"),
        (args["seed"] >= 0, "seed must be >= 0"),
        (args["min_digits"] >= 1, "min_digits must be >= 1"),
        (args["max_digits"] >= args["min_digits"], "max_digits must be >= min_digits"),
        (args["min_duration"] > 0, "min_duration must be > 0 seconds"),
        (args["max_duration"] >= args["min_duration"], "max_duration must be >= min_duration"),
        (args["num_workers"] >= 1, "num_workers must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise CorpusArgumentError(message)


def _corpus_arguments(args: Dict) -> Dict:
    """Return the arguments that define the corpus content."""
    return {k: v for k, v in args.items() if k not in RUNTIME_ONLY_ARGS}


def _plans(arguments: Dict, voices: List[SpeakerVoice]) -> Iterator[UtterancePlan]:
    """Yield the plans of every utterance, speaker by speaker."""
    for s, voice in enumerate(voices, start=1):
        for u in range(1, arguments["utts_per_speaker"] + 1):
            yield draw_utterance(
                voice, arguments["seed"], arguments["domain"], arguments["lang"], s, u,
                (arguments["min_digits"], arguments["max_digits"]),
                (arguments["min_duration"], arguments["max_duration"]),
            )


def _render_all(
    plans: List[UtterancePlan], espeak_path: Path, folder: Path, num_workers: int
) -> List[Tuple[str, float]]:
    """Render every plan, in a process pool when ``num_workers > 1``."""
    jobs = [(plan, str(espeak_path), str(folder)) for plan in plans]
    bar = dict(total=len(jobs), desc="synth_digits", unit="utt", mininterval=1.0)
    if num_workers == 1:
        return [render_utterance(job) for job in tqdm(jobs, **bar)]
    with ProcessPoolExecutor(max_workers=num_workers) as pool:
        return list(tqdm(pool.map(render_utterance, jobs, chunksize=4), **bar))


def spoken_digits(text: str, lang: str) -> str:
    """The digits of a target-domain text (digit words of ``lang``) as ``0``-``9``.

    Example
    -------
    >>> spoken_digits("yi1 ling2 jiu3", "zh"), spoken_digits("four two", "en")
    ('109', '42')
    """
    return "".join(str(DIGIT_WORDS[lang].index(word)) for word in text.split())


def write_transcripts(folder: Path, meta: Dict) -> None:
    """Write ``transcripts.tsv`` of a target-domain corpus from its metadata (source texts are not digits)."""
    arguments = meta["arguments"]
    if arguments["domain"] != "target":
        return
    with atomic_write(folder / TRANSCRIPTS_FILE, encoding="utf-8") as f:
        f.writelines(f"{key}.wav\t{spoken_digits(u['text'], arguments['lang'])}\n"
                     for key, u in sorted(meta["utterances"].items()))


def _plan_metadata(plan: UtterancePlan) -> Dict:
    """Return the per-utterance variation worth recording in ``.corpus.json``."""
    skip = {"speaker", "name", "text", "noise_seed"}
    return {
        k: round(v, 3) if isinstance(v, float) else v
        for k, v in dataclasses.asdict(plan).items()
        if k not in skip
    }


def _generate(folder: Path, arguments: Dict, num_workers: int) -> Dict:
    """Render the corpus of ``arguments`` into ``folder``; return its ``.corpus.json`` metadata.

    The metadata is written first with ``complete: false`` and rewritten
    with the utterances and ``complete: true`` once every file is written.
    """
    voices = [draw_voice(arguments["seed"], arguments["domain"], s) for s in range(1, arguments["num_speakers"] + 1)]
    meta = {"arguments": arguments, "complete": False,
            "speakers": {v.name: dataclasses.asdict(v) for v in voices}, "utterances": {}}
    write_corpus_meta(folder, meta)
    espeak_path = write_espeak_data(folder / ESPEAK_DIR, arguments["lang"], voices)
    plans = list(_plans(arguments, voices))
    results = _render_all(plans, espeak_path, folder, num_workers)
    meta["utterances"] = {
        key: {"text": plan.text, "duration": round(duration, 4), **_plan_metadata(plan)}
        for plan, (key, duration) in zip(plans, results)
    }
    write_transcripts(folder, meta)
    meta["complete"] = True
    write_corpus_meta(folder, meta)
    return meta


def synthesize_corpus(
    output_folder: str,
    num_speakers: int = 40,
    utts_per_speaker: int = 30,
    lang: Optional[str] = None,
    seed: int = 1234,
    min_digits: int = 3,
    max_digits: int = 12,
    domain: str = "target",
    min_duration: float = 3.0,
    max_duration: float = 6.0,
    num_workers: int = 2,
) -> Dict:
    """Write a synthetic multi-speaker corpus as ``output_folder/<spk>/<utt>.wav``.

    Arguments
    ---------
    output_folder : str
        Corpus root; must be new, empty, or a corpus made by this function.
    num_speakers : int
        Number of speakers (``tgt0001``... or ``src0001``...).
    utts_per_speaker : int
        Utterances per speaker (``u0001.wav``...).
    lang : str or None
        ``"zh"`` (Mandarin, pinyin) or ``"en"``; None: ``zh`` for the target
        domain, ``en`` for the source domain.
    seed : int
        Seed (>= 0); identical arguments give byte-identical files.
    min_digits, max_digits : int
        Digit-string length range of the target domain.
    domain : str
        ``"target"`` (digit strings) or ``"source"`` (text-independent
        word sequences cropped to ``min_duration``-``max_duration``).
    min_duration, max_duration : float
        Utterance duration range of the source domain, seconds.
    num_workers : int
        Worker processes.

    Returns
    -------
    summary : dict
        ``output_folder``, ``num_speakers``, ``num_utterances``,
        ``min_duration``/``max_duration`` (s), ``total_hours``, ``seconds``
        (wall time) and ``reused`` (True when an identical corpus was found).
    """
    args = dict(
        num_speakers=num_speakers, utts_per_speaker=utts_per_speaker,
        lang=DEFAULT_LANG.get(domain) if lang is None else lang, seed=seed,
        min_digits=min_digits, max_digits=max_digits, domain=domain,
        min_duration=min_duration, max_duration=max_duration, num_workers=num_workers,
    )
    validate_arguments(args)
    start = time.perf_counter()
    folder, arguments = Path(output_folder), _corpus_arguments(args)
    existing = existing_corpus(folder, arguments)
    if existing is not None:
        if not (folder / TRANSCRIPTS_FILE).is_file():  # a corpus made before transcripts were written
            write_transcripts(folder, existing)
        print(f"synth_digits: reusing the corpus in {folder} (same arguments)")
        return corpus_summary(folder, existing, time.perf_counter() - start, reused=True)
    check_tools(REQUIRED_TOOLS, INSTALL_HINT)
    meta = _generate(folder, arguments, num_workers)
    summary = corpus_summary(folder, meta, time.perf_counter() - start, reused=False)
    print(
        f"synth_digits: wrote {summary['num_utterances']} utterances of "
        f"{summary['num_speakers']} speakers ({summary['min_duration']:.2f}-"
        f"{summary['max_duration']:.2f} s each) to {folder} in {summary['seconds']:.1f} s"
    )
    return summary


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser."""
    parser = OneLineParser(
        prog="synth_digits.py",
        description="Synthesise an offline multi-speaker short-utterance corpus "
        "(DIR/<speaker>/<utt>.wav, 16 kHz mono) with espeak-ng and sox.",
    )
    parser.add_argument("--output_folder", required=True, help="corpus root DIR")
    parser.add_argument("--num_speakers", type=int, default=40)
    parser.add_argument("--utts_per_speaker", type=int, default=30)
    parser.add_argument("--lang", choices=sorted(ESPEAK_VOICES), default=None,
                        help="default: zh for the target domain, en for the source domain")
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--domain", choices=list(DOMAINS), default="target",
                        help="target: digit strings; source: longer text-independent speech")
    parser.add_argument("--min_digits", type=int, default=3, help="target domain")
    parser.add_argument("--max_digits", type=int, default=12, help="target domain")
    parser.add_argument("--min_duration", type=float, default=3.0, help="source domain, seconds")
    parser.add_argument("--max_duration", type=float, default=6.0, help="source domain, seconds")
    parser.add_argument("--num_workers", type=int, default=2)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> Dict:
    """Command-line entry point; returns the summary of ``synthesize_corpus``."""
    return run_corpus_cli(build_parser(), synthesize_corpus, argv)


if __name__ == "__main__":
    main()
