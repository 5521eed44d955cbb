"""SpeechBrain datasets for speaker training: random crops of manifest rows.

Differs from the VoxCeleb recipe's ``dataio_prep`` in two ways: rows may be concatenated file lists (``wav``
joined by ``;``), and rows shorter than the crop are repeat-padded instead of raising (SpeechBrain's
``random_chunk`` fails on them, and ``voxceleb_prepare`` drops them).
"""
import os
import random
from typing import Dict, Optional, Tuple

import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_ext.audio import read_row, repeat_pad
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.manifest import SAMPLE_RATE, read_manifest


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
