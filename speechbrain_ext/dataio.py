"""SpeechBrain datasets: random crops of manifest rows for speaker training; whole transcribed rows for the
digit recogniser (:func:`transcribed_dataset`).

The speaker datasets differ from the VoxCeleb recipe's ``dataio_prep`` in two ways: rows may be concatenated file
lists (``wav`` joined by ``;``), and rows shorter than the crop are repeat-padded instead of raising (SpeechBrain's
``random_chunk`` fails on them, and ``voxceleb_prepare`` drops them).
"""
import logging
import os
import random
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_ext.audio import read_row, repeat_pad
from speechbrain_ext.manifest import SAMPLE_RATE, ManifestError, PathLike, normalise_digits, read_manifest

logger = logging.getLogger(__name__)


def _crop_bounds(start: int, stop: int, crop: int, randomise: bool) -> Tuple[int, int]:
    """A ``crop``-sample window inside ``[start, stop)``: random or centred."""
    if stop - start <= crop:
        return start, stop
    offset = random.randint(0, stop - start - crop) if randomise else (stop - start - crop) // 2
    return start + offset, start + offset + crop


def add_crop_pipeline(dataset: DynamicItemDataset, sentence_len: float, randomise: bool,
                      sample_rate: int = SAMPLE_RATE) -> None:
    """Provide ``sig``: a ``sentence_len``-second crop, repeat-padded if the row is shorter; random in training
    (``randomise``), centred otherwise, so validation is deterministic."""
    crop = int(round(sentence_len * sample_rate))

    @takes("wav", "start", "stop")
    @provides("sig")
    def crop_pipeline(wav: str, start: int, stop: int) -> torch.Tensor:
        lo, hi = _crop_bounds(start, stop, crop, randomise)
        return repeat_pad(torch.from_numpy(read_row(wav, lo, hi, sample_rate)), crop)

    dataset.add_dynamic_item(crop_pipeline)


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


def manifest_dataset(path: PathLike) -> DynamicItemDataset:
    """A ``DynamicItemDataset`` of a manifest's rows (``manifest.read_manifest``), in file order.

    Items have ``id``, ``wav``, ``start``, ``stop`` (int samples), ``duration`` (float seconds, for
    SpeechBrain's length sorting) and ``spk_id``.
    """
    return DynamicItemDataset({row.id: {"wav": row.wav, "start": row.start, "stop": row.stop,
                                        "duration": row.duration, "spk_id": row.spk_id}
                               for row in read_manifest(path)})


def speaker_datasets(hparams: Dict, train_len: Optional[float] = None
                     ) -> Tuple[DynamicItemDataset, Optional[DynamicItemDataset], CategoricalEncoder]:
    """Train and valid datasets from ``hparams["train_csv"]``/``["valid_csv"]``.

    Training rows give random ``train_len``-second crops (default ``sentence_len``; the Brain names its own,
    see ``PretrainBrain.train_crop_key``); valid rows give centred ``sentence_len`` crops for speaker-ID
    validation (none when ``valid_csv`` is unset or has no rows). The label encoder is written to
    ``<save_folder>/label_encoder.txt``.
    """
    train = manifest_dataset(hparams["train_csv"])
    if len(train) == 0:
        raise ValueError(f"{hparams['train_csv']}: no training rows")
    valid = manifest_dataset(hparams["valid_csv"]) if hparams.get("valid_csv") else None
    if valid is not None and len(valid) == 0:
        valid = None
    add_crop_pipeline(train, train_len or hparams["sentence_len"], randomise=True)
    datasets = [train]
    if valid is not None:
        add_crop_pipeline(valid, hparams["sentence_len"], randomise=False)
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
