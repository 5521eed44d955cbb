"""SpeechBrain datasets: random crops of manifest rows or of single strings for speaker training; whole
transcribed rows for the digit recogniser (:func:`transcribed_dataset`).

The speaker datasets differ from the VoxCeleb recipe's ``dataio_prep`` in three ways: rows may be concatenated
file lists (``wav`` joined by ``;``); a crop longer than its signal is repeat-padded (``pad_mode: repeat``;
SpeechBrain's ``random_chunk`` fails on such rows and ``voxceleb_prepare`` drops them) or left short for
``PaddedBatch`` to zero-pad (``pad_mode: zero``, SpeechBrain's convention); and what one training example is
(``train_example``):

- ``row``: one manifest row (data prep joins a speaker's short strings up to ``min_duration``);
- ``string``: one string (a joined row is split back into its files), cropped to the crop length;
- ``string_joined``: one string followed by other strings of its speaker, in random order, until the crop
  length: every string is visited once per epoch and the long crop still holds several strings.
"""
import logging
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import soundfile as sf
import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_ext.audio import read_row, repeat_pad
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.manifest import SAMPLE_RATE, ManifestError, ManifestRow, normalise_digits, read_manifest

TRAIN_EXAMPLES = ("row", "string", "string_joined")
PAD_MODES = ("repeat", "zero")
logger = logging.getLogger(__name__)


def _crop_bounds(start: int, stop: int, crop: int, randomise: bool) -> Tuple[int, int]:
    """A ``crop``-sample window inside ``[start, stop)``: random or centred."""
    if stop - start <= crop:
        return start, stop
    offset = random.randint(0, stop - start - crop) if randomise else (stop - start - crop) // 2
    return start + offset, start + offset + crop


def _pad(signal: torch.Tensor, crop: int, pad_mode: str) -> torch.Tensor:
    """``repeat``: tiled to ``crop`` samples; ``zero``: as it is (``PaddedBatch`` zero-pads the batch and gives
    the relative lengths)."""
    return repeat_pad(signal, crop) if pad_mode == "repeat" else signal


def add_crop_pipeline(dataset: DynamicItemDataset, sentence_len: float, randomise: bool,
                      pad_mode: str = "repeat", sample_rate: int = SAMPLE_RATE) -> None:
    """Provide ``sig``: a ``sentence_len``-second crop, padded by ``pad_mode`` if the row is shorter; random in
    training (``randomise``), centred otherwise, so validation is deterministic."""
    crop = int(round(sentence_len * sample_rate))

    @takes("wav", "start", "stop")
    @provides("sig")
    def crop_pipeline(wav: str, start: int, stop: int) -> torch.Tensor:
        lo, hi = _crop_bounds(start, stop, crop, randomise)
        return _pad(torch.from_numpy(read_row(wav, lo, hi, sample_rate)), crop, pad_mode)

    dataset.add_dynamic_item(crop_pipeline)


def add_joined_crop_pipeline(dataset: DynamicItemDataset, rows: Sequence[ManifestRow], crop_len: float,
                             sample_rate: int = SAMPLE_RATE) -> None:
    """Provide ``sig`` for ``string_joined``: ``crop_len`` seconds of the example's string followed by other
    strings of its speaker in random order (each at most once), repeat-padded only when the speaker has too
    little speech; a string longer than the crop gives a random window of itself.

    Example
    -------
    >>> import tempfile, os, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> rows = []
    >>> for k, value in enumerate((0.1, 0.2, 0.3)):
    ...     path = os.path.join(d, f"{k}.wav")
    ...     sf.write(path, np.full(800, value), 16000)
    ...     rows.append(ManifestRow(f"s/{k}", path, 0, 800, "s"))
    >>> ds = DynamicItemDataset({r.id: {"wav": r.wav, "start": r.start, "stop": r.stop, "spk_id": r.spk_id}
    ...                          for r in rows})
    >>> add_joined_crop_pipeline(ds, rows, 0.125)
    >>> ds.set_output_keys(["sig"])
    >>> sig = ds[1]["sig"]
    >>> sig.shape, round(float(sig[0]), 3), sorted({round(float(x), 3) for x in sig[800:]}) != [0.2]
    (torch.Size([2000]), 0.2, True)
    """
    crop = int(round(crop_len * sample_rate))
    pool: Dict[str, List[ManifestRow]] = {}
    for row in rows:
        pool.setdefault(row.spk_id, []).append(row)

    @takes("id", "wav", "start", "stop", "spk_id")
    @provides("sig")
    def joined_pipeline(row_id: str, wav: str, start: int, stop: int, spk_id: str) -> torch.Tensor:
        lo, hi = _crop_bounds(start, stop, crop, randomise=True)
        pieces, have = [read_row(wav, lo, hi, sample_rate)], hi - lo
        others = [r for r in pool[spk_id] if r.id != row_id]
        random.shuffle(others)
        for other in others:
            if have >= crop:
                break
            pieces.append(read_row(other.wav, other.start, other.stop, sample_rate))
            have += pieces[-1].shape[0]
        return repeat_pad(torch.from_numpy(np.concatenate(pieces)), crop)

    dataset.add_dynamic_item(joined_pipeline)


def string_rows(rows: Sequence[ManifestRow]) -> List[ManifestRow]:
    """Every string of ``rows`` as its own row: a joined row (a ``;`` list of whole files, see
    ``data_prep.common.joined_row``) gives one row per file, id ``<row id>:<k>``; other rows are kept."""
    out = []
    for row in rows:
        files = row.files
        if len(files) == 1:
            out.append(row)
            continue
        out.extend(ManifestRow(f"{row.id}:{k}", path, 0, sf.info(path).frames, row.spk_id, row.genre)
                   for k, path in enumerate(files))
    return out


def add_label_pipeline(datasets, label_encoder_path: str) -> CategoricalEncoder:
    """Provide ``spk_id_encoded``; create or load the label encoder (DDP-safe).

    The encoder is built from the first dataset (training) and saved to ``label_encoder_path``; a speaker of a
    later dataset that training does not know raises a clear error when its row is read.
    """
    encoder = CategoricalEncoder()

    @takes("spk_id")
    @provides("spk_id_encoded")
    def label_pipeline(spk_id: str) -> torch.Tensor:
        return encoder.encode_sequence_torch([spk_id])

    for ds in datasets:
        ds.add_dynamic_item(label_pipeline)
    encoder.load_or_create(path=label_encoder_path, from_didatasets=[datasets[0]], output_key="spk_id")
    return encoder


def rows_dataset(rows: Sequence[ManifestRow]) -> DynamicItemDataset:
    """A ``DynamicItemDataset`` of manifest rows, in order.

    Items have ``id``, ``wav``, ``start``, ``stop`` (int samples), ``duration`` (float seconds, for
    SpeechBrain's length sorting) and ``spk_id``.
    """
    return DynamicItemDataset({row.id: {"wav": row.wav, "start": row.start, "stop": row.stop,
                                        "duration": row.duration, "spk_id": row.spk_id} for row in rows})


def training_examples(rows: Sequence[ManifestRow], train_example: str, crop_len: float,
                      pad_mode: str) -> DynamicItemDataset:
    """The training dataset of ``rows`` for one ``train_example`` rule (module docstring), random crops of
    ``crop_len`` seconds."""
    if train_example not in TRAIN_EXAMPLES:
        raise ValueError(f"train_example must be one of {TRAIN_EXAMPLES}, got {train_example!r}")
    if pad_mode not in PAD_MODES:
        raise ValueError(f"pad_mode must be one of {PAD_MODES}, got {pad_mode!r}")
    if train_example != "row":
        rows = string_rows(rows)
    dataset = rows_dataset(rows)
    if train_example == "string_joined":
        add_joined_crop_pipeline(dataset, rows, crop_len)
    else:
        add_crop_pipeline(dataset, crop_len, randomise=True, pad_mode=pad_mode)
    return dataset


def speaker_datasets(hparams: Dict, train_len: Optional[float] = None
                     ) -> Tuple[DynamicItemDataset, Optional[DynamicItemDataset], CategoricalEncoder]:
    """Train and valid datasets from ``hparams["train_csv"]``/``["valid_csv"]``.

    Training examples (``hparams["train_example"]``, see the module docstring) give random ``train_len``-second
    crops (default ``sentence_len``; the Brain names its own, see ``PretrainBrain.train_crop_key``), padded by
    ``hparams["pad_mode"]``; valid rows give centred ``sentence_len`` crops for speaker-ID validation (none when
    ``valid_csv`` is unset or has no rows). The label encoder is written to ``<save_folder>/label_encoder.txt``.
    """
    rows = read_manifest(hparams["train_csv"])
    if not rows:
        raise ValueError(f"{hparams['train_csv']}: no training rows")
    train = training_examples(rows, hparams["train_example"], train_len or hparams["sentence_len"],
                              hparams["pad_mode"])
    valid = rows_dataset(read_manifest(hparams["valid_csv"])) if hparams.get("valid_csv") else None
    if valid is not None and len(valid) == 0:
        valid = None
    datasets = [train]
    if valid is not None:
        add_crop_pipeline(valid, hparams["sentence_len"], randomise=False, pad_mode=hparams["pad_mode"])
        datasets.append(valid)
    encoder = add_label_pipeline(datasets, os.path.join(hparams["save_folder"], "label_encoder.txt"))
    for ds in datasets:
        ds.set_output_keys(["id", "sig", "spk_id_encoded"])
    return train, valid, encoder


def transcribed_rows(path: PathLike) -> List:
    """The rows of a manifest whose ``wrd`` is a digit string; the others are a counted, logged skip.

    A manifest without any is a ``ManifestError`` of one line naming it (a corpus prepared without transcripts:
    the recogniser has nothing to learn from).
    """
    rows = read_manifest(path)
    kept = [row for row in rows if row.wrd and normalise_digits(row.wrd) == row.wrd]
    if not kept:
        raise ManifestError(f"{path}: no row has a digit transcript (wrd column): prepare the corpus with "
                            "<root>/transcripts.tsv or <utt>.txt files beside the audio")
    if len(kept) < len(rows):
        logger.warning("%s: %d of %d rows have no digit transcript (wrd) and are skipped for the recogniser",
                       path, len(rows) - len(kept), len(rows))
    return kept


def transcribed_dataset(path: PathLike, encode: Callable[[str], Sequence[int]]) -> DynamicItemDataset:
    """Whole rows of a manifest that have digits (:func:`transcribed_rows`), for CTC training.

    Items: ``id``, ``sig`` (the row's signal ``[T]``, not cropped: every digit of ``wrd`` is in it), ``wrd`` and
    ``tokens`` (``encode(wrd)``, the token ids ``[L]``); ``duration`` for SpeechBrain's length sorting.
    """
    dataset = DynamicItemDataset({row.id: {"wav": row.wav, "start": row.start, "stop": row.stop,
                                           "duration": row.duration, "wrd": row.wrd}
                                  for row in transcribed_rows(path)})

    @takes("wav", "start", "stop")
    @provides("sig")
    def audio_pipeline(wav: str, start: int, stop: int) -> torch.Tensor:
        return torch.from_numpy(read_row(wav, start, stop))

    @takes("wrd")
    @provides("tokens")
    def text_pipeline(wrd: str) -> torch.Tensor:
        return torch.LongTensor(list(encode(wrd)))

    dataset.add_dynamic_item(audio_pipeline)
    dataset.add_dynamic_item(text_pipeline)
    dataset.set_output_keys(["id", "sig", "wrd", "tokens"])
    return dataset
