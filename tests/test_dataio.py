"""What one training example is (speechbrain_ext.dataio): every string of every training speaker is visited
once per epoch under ``string`` and ``string_joined``, and the made-stock fine-tune of the ablation uses it."""
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataloader import make_dataloader

from data_prep.common import Utterance, training_rows
from speechbrain_ext.builder import compose
from speechbrain_ext.dataio import speaker_datasets, training_examples
from speechbrain_ext.manifest import SAMPLE_RATE, write_manifest

from recipe_utils import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from ablation import TRANSFER_YAML, VARIANTS  # noqa: E402


@pytest.fixture
def strings(tmp_path):
    """Three speakers, 5 strings each of 0.3-0.9 s; each string's samples are its own constant value, so an
    example tells which strings it holds."""
    utts, value = [], {}
    for s in range(3):
        for k in range(5):
            path = tmp_path / f"spk{s}" / f"u{k}.wav"
            path.parent.mkdir(exist_ok=True)
            level = round(0.01 * (1 + 5 * s + k), 2)
            frames = int((0.3 + 0.15 * k) * SAMPLE_RATE)
            sf.write(path, np.full(frames, level, dtype=np.float32), SAMPLE_RATE)
            utts.append(Utterance(f"spk{s}/u{k}", str(path), frames, f"spk{s}"))
            value[str(path)] = level
    rows = training_rows(utts, min_duration=1.5, max_duration=0)  # the transfer prep's joining
    return rows, utts, value


def one_epoch(dataset, batch_size=4):
    """Every batch of one shuffled epoch through SpeechBrain's loader (PaddedBatch)."""
    dataset.set_output_keys(["id", "sig"])
    return list(make_dataloader(dataset, batch_size=batch_size, shuffle=True))


def test_row_examples_are_the_joined_rows_and_see_fewer_examples(strings):
    rows, utts, _ = strings
    assert len(rows) < len(utts)  # the premise: the prep joins strings
    ids = [i for batch in one_epoch(training_examples(rows, "row", 1.0, "repeat")) for i in batch.id]
    assert sorted(ids) == sorted(r.id for r in rows)


@pytest.mark.parametrize("rule", ["string", "string_joined"])
def test_an_epoch_visits_every_string_of_every_speaker_once(strings, rule):
    rows, utts, value = strings
    batches = one_epoch(training_examples(rows, rule, 1.0, "repeat"))
    ids = [i for batch in batches for i in batch.id]
    assert len(ids) == len(utts) == len(set(ids))
    # each example starts with its own string: its first sample is that string's value
    paths = {r.id: r.wav for r in rows}
    firsts = {i: round(float(sig[0]), 2) for batch in batches for i, sig in zip(batch.id, batch.sig.data)}
    seen = set()
    for example_id, first in firsts.items():
        row_id, _, k = example_id.partition(":")
        path = paths[row_id].split(";")[int(k or 0)]
        assert first == value[path]
        seen.add(path)
    assert seen == {u.path for u in utts}


def test_string_joined_fills_the_crop_with_other_strings_of_the_same_speaker(strings):
    rows, utts, value = strings
    speaker_of = {round(v, 2): p.split("/")[-2] for p, v in value.items()}
    for batch in one_epoch(training_examples(rows, "string_joined", 1.0, "repeat")):
        sig = batch.sig.data
        assert sig.shape[1] == SAMPLE_RATE and bool((batch.sig.lengths == 1).all())
        for example_id, wav in zip(batch.id, sig):
            levels = {round(float(x), 2) for x in torch.unique(wav)}
            assert len(levels) >= 2  # no string is 1 s long: others were joined, not the string repeated
            assert {speaker_of[v] for v in levels} == {example_id.split("/")[0]}


def test_zero_padding_leaves_short_strings_short_for_the_batch(strings):
    rows, utts, _ = strings
    (batch,) = one_epoch(training_examples(rows, "string", 2.0, "zero"), batch_size=15)
    longest = max(u.frames for u in utts)
    assert batch.sig.data.shape[1] == longest < 2 * SAMPLE_RATE  # nothing tiled up to the 2 s crop
    assert float(batch.sig.lengths.min()) == pytest.approx(min(u.frames for u in utts) / longest, abs=1e-4)


def test_unknown_rules_are_refused(strings):
    rows = strings[0]
    with pytest.raises(ValueError, match="train_example"):
        training_examples(rows, "utterance", 1.0, "repeat")
    with pytest.raises(ValueError, match="pad_mode"):
        training_examples(rows, "row", 1.0, "reflect")


def test_the_ablations_stock_finetune_sees_every_string_as_in_speechbrain(strings, tmp_path):
    rows, utts, _ = strings
    write_manifest(tmp_path / "train.csv", rows)
    lines = [f"data_folder: {tmp_path}", f"pretrained_path: {tmp_path}", f"train_csv: {tmp_path}/train.csv",
             "valid_csv: null", f"save_folder: {tmp_path}", "out_n_neurons: 3"]
    lines += [option[2:].replace("=", ": ", 1) for option in VARIANTS["stock_finetune"]]
    hparams = load_hyperpyyaml(compose(ROOT / TRANSFER_YAML, "\n".join(lines)))
    assert (hparams["train_example"], hparams["pad_mode"]) == ("string", "zero")  # crop-and-pad, SpeechBrain's way
    train, valid, _ = speaker_datasets(hparams, hparams["long_len"])
    ids = [i for batch in one_epoch(train) for i in batch.id]
    assert valid is None and len(ids) == len(utts) == len(set(ids))
