"""SpeechBrain datasets for speaker training: random crops of manifest rows.

Differs from the VoxCeleb recipe's ``dataio_prep`` in two ways: rows may be
concatenated file lists (``wav`` joined by ``;``), and rows shorter than the
crop are repeat-padded instead of raising (SpeechBrain's ``random_chunk``
fails on them, and ``voxceleb_prepare`` drops them).
"""
import os
import random
from typing import Dict, Optional, Tuple

import torch
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.data_pipeline import provides, takes

from speechbrain_ext.audio import SAMPLE_RATE, read_row, repeat_pad


def _crop_bounds(start: int, stop: int, crop: int, randomise: bool) -> Tuple[int, int]:
    """A ``crop``-sample window inside ``[start, stop)``: random or centred."""
    if stop - start <= crop:
        return start, stop
    offset = random.randint(0, stop - start - crop) if randomise else (stop - start - crop) // 2
    return start + offset, start + offset + crop


def add_crop_pipeline(dataset: DynamicItemDataset, sentence_len: float, randomise: bool,
                      sample_rate: int = SAMPLE_RATE) -> None:
    """Provide ``sig``: a ``sentence_len``-second crop, repeat-padded if the row is shorter.

    Crops are random in training (``randomise``) and centred otherwise, so
    validation is deterministic.
    """
    crop = int(round(sentence_len * sample_rate))

    @takes("wav", "start", "stop")
    @provides("sig")
    def crop_pipeline(wav: str, start: str, stop: str) -> torch.Tensor:
        lo, hi = _crop_bounds(int(start), int(stop), crop, randomise)
        return repeat_pad(torch.from_numpy(read_row(wav, lo, hi, sample_rate)), crop)

    dataset.add_dynamic_item(crop_pipeline)


def add_label_pipeline(datasets, label_encoder_path: str) -> CategoricalEncoder:
    """Provide ``spk_id_encoded``; create or load the label encoder (DDP-safe).

    The encoder is built from the first dataset (training) and saved to
    ``label_encoder_path``; a speaker of a later dataset that training does
    not know raises a clear error when its row is read.
    """
    encoder = CategoricalEncoder()

    @takes("spk_id")
    @provides("spk_id_encoded")
    def label_pipeline(spk_id: str) -> torch.Tensor:
        return encoder.encode_sequence_torch([spk_id])

    for ds in datasets:
        ds.add_dynamic_item(label_pipeline)
    encoder.load_or_create(path=label_encoder_path, from_didatasets=[datasets[0]],
                           output_key="spk_id")
    return encoder


def speaker_datasets(hparams: Dict, train_len: Optional[float] = None
                     ) -> Tuple[DynamicItemDataset, Optional[DynamicItemDataset], CategoricalEncoder]:
    """Train and valid datasets from ``hparams["train_csv"]``/``["valid_csv"]``.

    Training rows give random ``train_len``-second crops (default
    ``sentence_len``; the Brain names its own, see ``PretrainBrain.train_crop_key``);
    valid rows give centred ``sentence_len`` crops for speaker-ID validation.
    The label encoder is written to ``<save_folder>/label_encoder.txt``.
    """
    train = DynamicItemDataset.from_csv(hparams["train_csv"])
    valid = None
    if hparams.get("valid_csv") and os.path.getsize(hparams["valid_csv"]) > 0:
        valid = DynamicItemDataset.from_csv(hparams["valid_csv"])
        if len(valid) == 0:
            valid = None
    if len(train) == 0:
        raise ValueError(f"{hparams['train_csv']}: no training rows")
    add_crop_pipeline(train, train_len or hparams["sentence_len"], randomise=True)
    datasets = [train]
    if valid is not None:
        add_crop_pipeline(valid, hparams["sentence_len"], randomise=False)
        datasets.append(valid)
    encoder = add_label_pipeline(datasets, os.path.join(hparams["save_folder"], "label_encoder.txt"))
    for ds in datasets:
        ds.set_output_keys(["id", "sig", "spk_id_encoded"])
    return train, valid, encoder
