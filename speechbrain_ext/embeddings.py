"""Speaker embeddings of manifest rows: length-bucketed batches, enrolment, disk cache.

Padding a clip changes its ECAPA embedding even when relative lengths are passed (SpeechBrain issues
#1374/#945): Fbank frames at the padded edge and the per-batch feature length differ. Here utterances are
sorted by length and only **equal-length** utterances share a batch (an odd length is a batch of one), so no
signal is ever padded and a batched embedding equals the one-at-a-time embedding up to float rounding.

Enrolment rows whose ``wav`` lists several files (``a.wav;b.wav``) are, by default (``mode="average"``),
embedded file by file and enrolled as the access-control CLI does (``scoring.voiceprints``); ``mode="concat"``
embeds the joined signal instead. Every row's embedding is that voiceprint, so rows come back L2-normalised.
"""
import hashlib
import logging
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import soundfile as sf
import torch
from tqdm import tqdm

from speechbrain_ext.audio import AudioError, read_row
from speechbrain_ext.io_utils import PathLike, atomic_write
from speechbrain_ext.manifest import SAMPLE_RATE, ManifestRow, read_manifest
from speechbrain_ext.scoring import voiceprints

logger = logging.getLogger(__name__)

MODES = ("average", "concat")
CACHE_VERSION = 2  # 2: rows are voiceprints (normalised means), 1 was raw means


class EmbeddingError(ValueError):
    """An embedding problem; the message is one line naming the row or file."""


@dataclass(frozen=True)
class Segment:
    """A signal to embed: samples ``[start, stop)`` of ``wav``, contributing to row ``row``."""

    row: int
    wav: str
    start: int
    stop: int

    @property
    def length(self) -> int:
        """Number of samples."""
        return self.stop - self.start


def row_segments(index: int, row: ManifestRow, mode: str = "average") -> List[Segment]:
    """Signals embedded for one row: the row itself, or one per listed file.

    With ``mode="average"`` and a ``;`` list, the row's window ``[start, stop)`` of the joined signal is split
    at file boundaries (file lengths read from the headers); files outside the window give no segment.
    """
    paths = row.files
    if mode == "concat" or len(paths) == 1:
        return [Segment(index, row.wav, row.start, row.stop)]
    segments, offset = [], 0
    for path in paths:
        try:
            frames = sf.info(path).frames
        except (sf.LibsndfileError, RuntimeError, OSError) as err:
            raise AudioError(f"{path}: cannot read audio ({err})") from err
        start, stop = max(row.start, offset), min(row.stop, offset + frames)
        if start < stop:
            segments.append(Segment(index, path, start - offset, stop - offset))
        offset += frames
    return segments


def length_buckets(segments: Sequence[Segment], batch_size: int) -> List[List[int]]:
    """Batches of segment indices: equal lengths only, longest first, at most ``batch_size``.

    Example
    -------
    >>> segs = [Segment(i, "x", 0, n) for i, n in enumerate([5, 7, 5, 5, 7, 3])]
    >>> length_buckets(segs, batch_size=2)
    [[1, 4], [0, 2], [3], [5]]
    """
    order = sorted(range(len(segments)), key=lambda i: (-segments[i].length, i))
    batches = []
    for _, group in groupby(order, key=lambda i: segments[i].length):
        group = list(group)
        batches.extend(group[i:i + batch_size] for i in range(0, len(group), batch_size))
    return batches


def _read_segment(segment: Segment) -> torch.Tensor:
    """Samples of one segment ``[T]``, checking that the file has them all."""
    signal = torch.from_numpy(read_row(segment.wav, segment.start, segment.stop))
    if len(signal) != segment.length:
        raise AudioError(f"{segment.wav}: has {len(signal)} samples in [{segment.start}, {segment.stop}), "
                         f"expected {segment.length} (manifest stop past the end of the file?)")
    return signal


class EmbeddingExtractor:
    """Embeds waveforms with SpeechBrain's three inference modules, in eval mode, without gradients.

    ``compute_features``: ``[B, T] -> [B, F, M]`` (e.g. ``Fbank``); ``mean_var_norm``: ``(feats, lens [B]) ->
    feats`` (e.g. sentence ``InputNormalization``); ``embedding_model``: ``(feats, lens [B]) -> [B, 1, D]``
    (e.g. ``ECAPA_TDNN``). ``batch_size``: most equal-length signals per forward pass.

    Example
    -------
    >>> from speechbrain.lobes.features import Fbank
    >>> from speechbrain.processing.features import InputNormalization
    >>> from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
    >>> ext = EmbeddingExtractor(Fbank(n_mels=24), InputNormalization(norm_type="sentence", std_norm=False),
    ...                          ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=12))
    >>> ext.embed_signals([torch.rand(8000), torch.rand(4000), torch.rand(8000)]).shape
    torch.Size([3, 12])
    """

    def __init__(self, compute_features: torch.nn.Module, mean_var_norm: torch.nn.Module,
                 embedding_model: torch.nn.Module, batch_size: int = 16, device: str = "cpu") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.modules = torch.nn.ModuleDict({"compute_features": compute_features, "mean_var_norm": mean_var_norm,
                                            "embedding_model": embedding_model}).to(device).eval()
        self.batch_size = batch_size
        self.device = device
        self._fingerprint: Optional[str] = None

    @torch.no_grad()
    def forward(self, wavs: torch.Tensor) -> torch.Tensor:
        """Embed equal-length waveforms ``[B, T]``; returns ``[B, D]`` on the CPU."""
        wavs = wavs.to(self.device, torch.float32)
        lens = torch.ones(wavs.shape[0], device=self.device)
        feats = self.modules["compute_features"](wavs)  # [B, F, M]
        feats = self.modules["mean_var_norm"](feats, lens)
        return self.modules["embedding_model"](feats, lens).squeeze(1).cpu()  # [B, D]

    def embed_signals(self, signals: Sequence[torch.Tensor]) -> torch.Tensor:
        """Embed 1-D waveforms of any lengths, batching equal lengths only: ``[N, D]``, row i of ``signals[i]``."""
        segments = [Segment(i, "", 0, len(s)) for i, s in enumerate(signals)]
        return self.embed_segments(segments, desc=None, load=lambda seg: signals[seg.row])

    def embed_segments(self, segments: Sequence[Segment], desc: Optional[str] = "embed",
                       load=_read_segment) -> torch.Tensor:
        """Embed segments ``[N, D]`` in the order given, by :meth:`forward` over length buckets; ``load(segment)``
        gives its ``[T]`` signal (default: read from its file)."""
        if not segments:
            raise EmbeddingError("nothing to embed")
        out: List[Optional[torch.Tensor]] = [None] * len(segments)
        total = sum(s.length for s in segments) / SAMPLE_RATE
        with tqdm(total=round(total, 1), desc=desc, unit="s audio", disable=desc is None) as bar:
            for batch in length_buckets(segments, self.batch_size):
                wavs = torch.stack([torch.as_tensor(load(segments[i])) for i in batch])  # [B, T]
                emb = self.forward(wavs)
                for i, e in zip(batch, emb):
                    out[i] = e
                bar.update(round(wavs.numel() / SAMPLE_RATE, 1))
        return torch.stack(out)

    def fingerprint(self) -> str:
        """:func:`fingerprint` of the three modules (part of the cache key)."""
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.modules)
        return self._fingerprint


def fingerprint(modules: Mapping[str, torch.nn.Module]) -> str:
    """SHA-256 of named modules' classes and weights, in the mapping's order.

    Identifies the embedding pipeline (``compute_features``, ``mean_var_norm``, ``embedding_model``) whatever
    loaded it: an :class:`EmbeddingExtractor` in evaluation and SpeechBrain's ``SpeakerRecognition`` at the
    door give the same value for the same weights.
    """
    digest = hashlib.sha256()
    for name, module in modules.items():
        digest.update(f"{name}:{type(module).__qualname__}".encode())
        for key, value in module.state_dict().items():
            digest.update(key.encode())
            if isinstance(value, torch.Tensor):
                digest.update(value.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def embed_rows(rows: Sequence[ManifestRow], extractor: EmbeddingExtractor, mode: str = "average",
               cache_dir: Optional[PathLike] = None, name: str = "embeddings") -> Tuple[List[str], torch.Tensor]:
    """``(ids, [N, D] float32)``: each row's voiceprint of its signals (``scoring.voiceprints``, see ``mode`` in
    the module docstring), cached as ``<cache_dir>/<name>-<key>.pt`` (no cache when ``cache_dir`` is None)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not rows:
        raise EmbeddingError(f"{name}: no rows to embed")
    ids = [row.id for row in rows]
    cache = None
    if cache_dir is not None:  # key: the rows (id, wav, start, stop), the mode, the model and CACHE_VERSION
        digest = hashlib.sha256(f"{CACHE_VERSION}\n{mode}\n{extractor.fingerprint()}\n".encode())
        for row in rows:
            digest.update(f"{row.id},{row.wav},{row.start},{row.stop}\n".encode())
        cache = Path(cache_dir) / f"{name}-{digest.hexdigest()[:20]}.pt"
        if cache.is_file():
            logger.info("%s: embeddings read from cache %s", name, cache)
            return ids, torch.load(cache)["embeddings"]
    segments = [seg for i, row in enumerate(rows) for seg in row_segments(i, row, mode)]
    empty = sorted(set(range(len(rows))) - {seg.row for seg in segments})
    if empty:
        row = rows[empty[0]]
        raise EmbeddingError(f"row {row.id!r}: its window [{row.start}, {row.stop}) is past the end of {row.wav}")
    seg_emb = extractor.embed_segments(segments, desc=name)  # [S, D]
    owner = torch.tensor([seg.row for seg in segments])  # [S]
    bad = ~torch.isfinite(seg_emb).all(dim=1)
    if bad.any():
        first = ids[int(owner[int(bad.nonzero()[0])])]
        raise EmbeddingError(f"embedding of {first!r} has NaN/inf values ({int(bad.sum())} such rows)")
    embeddings = voiceprints(seg_emb, owner, len(rows))  # [N, D]
    if cache is not None:
        with atomic_write(cache, "wb") as f:
            torch.save({"ids": ids, "mode": mode, "embeddings": embeddings}, f)
    return ids, embeddings


def embed_manifest(manifest: PathLike, extractor: EmbeddingExtractor, mode: str = "average",
                   cache_dir: Optional[PathLike] = None) -> Tuple[List[str], torch.Tensor]:
    """:func:`embed_rows` over every row of a manifest CSV (cache name: the file's stem)."""
    return embed_rows(read_manifest(manifest), extractor, mode, cache_dir, name=Path(manifest).stem)


def speaker_means(manifest: PathLike, extractor: EmbeddingExtractor, max_speakers: int = 1000,
                  utts_per_speaker: int = 5, cache_dir: Optional[PathLike] = None
                  ) -> Tuple[List[str], torch.Tensor, torch.Tensor]:
    """``(speakers [C], voiceprints [C, D], mean [D])`` of a training manifest: the AS-norm cohort.

    The first ``max_speakers`` speakers (sorted) and, for each, its first ``utts_per_speaker`` rows (sorted by
    id) are used, so the cohort is deterministic and capped. A cohort speaker is enrolled as a test speaker is
    (``scoring.voiceprints`` of its utterance embeddings); ``mean`` is that of the normalised utterance
    embeddings used (for mean subtraction).
    """
    by_speaker: Dict[str, List[ManifestRow]] = {}
    for row in sorted(read_manifest(manifest), key=lambda r: r.id):
        by_speaker.setdefault(row.spk_id, []).append(row)
    speakers = sorted(by_speaker)[:max_speakers]
    rows = [row for spk in speakers for row in by_speaker[spk][:utts_per_speaker]]
    _, emb = embed_rows(rows, extractor, "concat", cache_dir, name=f"{Path(manifest).stem}-cohort")
    position = {spk: i for i, spk in enumerate(speakers)}
    owner = torch.tensor([position[row.spk_id] for row in rows])
    return speakers, voiceprints(emb, owner, len(speakers)), emb.mean(dim=0)
