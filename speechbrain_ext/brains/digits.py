"""Digit recogniser brain: CTC over a SentencePiece vocabulary of the ten digits, on whole transcribed rows.

    log p = log_softmax(ctc_lin(enc(feat_augment(norm(Fbank(wav_augment(wav)))))))     [B, T', V]
    L     = CTC(log p, tokens)         blank = index 0 (the tokenizer's <unk>, as SpeechBrain's CTC recipes)

What differs from SpeechBrain's CTC recipes (e.g. ``recipes/TIMIT/ASR/CTC``), as a :class:`RecipeBrain`:

- the tokenizer is trained by the recipe from the training transcripts (the manifests' ``wrd`` column) before
  the model is built, with every digit guaranteed a token (:func:`train_tokenizer`); rows without digits are a
  counted skip, and a manifest without any is one line naming it (``dataio.transcribed_rows``);
- the LR follows the project's stateless schedule (``lr_schedule`` at the fractional epoch), so a resumed run
  continues exactly; non-finite losses, CPU DDP and checkpoint-then-log as the speaker Brains;
- validation decodes greedily (``decoding_function``, the exported model's too) and checkpoints on the digit
  error rate (meta ``ErrorRate``: ``checkpoints.best_checkpoint`` picks the lowest).
"""
import logging
import os
from pathlib import Path

import speechbrain as sb
import torch
from speechbrain.tokenizers.SentencePiece import SentencePiece
from speechbrain.utils.distributed import run_on_main

from speechbrain_ext.brains.base import ConfigError, RecipeBrain
from speechbrain_ext.dataio import transcribed_dataset, transcribed_rows
from speechbrain_ext.digits import digit_error_rate, normalise_digits
from speechbrain_ext.io_utils import PathLike, atomic_write
from speechbrain_ext.manifest import read_manifest

logger = logging.getLogger(__name__)
ALL_DIGITS = "0123456789"
TOKENIZER_TEXT = "train_text.txt"


def train_tokenizer(train_csv: PathLike, folder: PathLike, vocab_size: int) -> SentencePiece:
    """SpeechBrain's ``SentencePiece`` (``char`` model: one token per digit, ``<unk>`` = 0) trained on the digit
    transcripts of ``train_csv``, or reloaded from ``folder`` when trained before (a resumed run).

    The training text gets one extra line holding every digit, so that a digit no transcript has still gets its
    token and the vocabulary is always ``<unk>`` + 10 (``ConfigError`` when ``vocab_size`` is not that).
    SentencePiece is given the text file, not the CSV: its CSV reader would take rows without digits too.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_ext.manifest import ManifestRow, write_manifest
    >>> folder = tempfile.mkdtemp()
    >>> write_manifest(f"{folder}/train.csv", [ManifestRow("a", "/a.wav", 0, 10, "s", wrd="4711")])
    >>> sp = train_tokenizer(f"{folder}/train.csv", f"{folder}/tok", 11).sp
    >>> sp.vocab_size(), sp.decode_ids(sp.encode_as_ids("90210"))
    (11, '90210')
    """
    folder = Path(folder)
    rows = transcribed_rows(train_csv)

    def write_text() -> None:
        with atomic_write(folder / TOKENIZER_TEXT, encoding="utf-8") as f:
            f.writelines(f"{row.wrd}\n" for row in rows)
            f.write(f"{ALL_DIGITS}\n")

    run_on_main(write_text)
    tokenizer = SentencePiece(model_dir=str(folder), vocab_size=vocab_size, text_file=str(folder / TOKENIZER_TEXT),
                              model_type="char", add_dummy_prefix=False, bos_id=-1, eos_id=-1, pad_id=-1, unk_id=0)
    if tokenizer.sp.vocab_size() != vocab_size:
        raise ConfigError(f"output_neurons={vocab_size} but the tokenizer in {folder} has "
                          f"{tokenizer.sp.vocab_size()} tokens: set --output_neurons={tokenizer.sp.vocab_size()}")
    return tokenizer


def tokenizer_file(folder: PathLike, vocab_size: int) -> Path:
    """The SentencePiece model file :func:`train_tokenizer` writes in ``folder``."""
    return Path(folder) / f"{vocab_size}_char.model"


class DigitBrain(RecipeBrain):
    """CTC digit recogniser.

    Modules: ``compute_features``, ``mean_var_norm``, ``enc`` (``[B, T, n_mels]`` -> ``[B, T', D]``) and
    ``ctc_lin`` (``[B, T', D]`` -> ``[B, T', V]``). Hparams read: ``log_softmax``, ``ctc_cost``,
    ``decoding_function``, ``wav_augment``, ``feat_augment`` (each may be null), ``lr_schedule``, ``tokenizer``
    (set by :meth:`datasets`), ``epoch_counter``, ``train_logger``.
    """

    @classmethod
    def datasets(cls, hparams: dict):
        """``(train, valid)`` for ``recipes/train.py``: whole transcribed rows, after training the tokenizer
        (:func:`train_tokenizer`, put in ``hparams["tokenizer"]``). No valid set when ``valid_csv`` has no
        transcribed row."""
        tokenizer = train_tokenizer(hparams["train_csv"], hparams["tokenizer_folder"], hparams["output_neurons"])
        hparams["tokenizer"] = tokenizer
        train = transcribed_dataset(hparams["train_csv"], tokenizer.sp.encode_as_ids)
        valid_csv = hparams.get("valid_csv")
        has_valid = valid_csv and os.path.isfile(valid_csv) and any(r.wrd for r in read_manifest(valid_csv))
        return train, transcribed_dataset(valid_csv, tokenizer.sp.encode_as_ids) if has_valid else None

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        """The LR of this step (stateless schedule of the fractional epoch)."""
        self.lr = self.hparams.lr_schedule.apply(self.optimizer, self.progress)
        self.batch_ids = batch.id

    def compute_forward(self, batch, stage):
        """Log-probabilities ``[B', T', V]``, relative lengths ``[B']`` and tokens ``([B', L], [B'])``
        (B' = B unless the waveform augmenter adds copies; tokens follow them)."""
        batch = batch.to(self.device)
        wavs, lens = batch.sig
        tokens, token_lens = batch.tokens
        augment = self.hparams.wav_augment
        if stage == sb.Stage.TRAIN and augment is not None:
            wavs, lens = augment(wavs, lens)
            tokens, token_lens = augment.replicate_labels(tokens), augment.replicate_labels(token_lens)
        feats = self.modules.mean_var_norm(self.modules.compute_features(wavs), lens)
        if stage == sb.Stage.TRAIN and self.hparams.feat_augment is not None:
            feats, lens = self.hparams.feat_augment(feats, lens)
        log_probs = self.hparams.log_softmax(self.modules.ctc_lin(self.modules.enc(feats)))
        return log_probs, lens, (tokens, token_lens)

    def compute_objectives(self, predictions, batch, stage):
        """CTC loss; outside training also the greedy transcriptions, for the digit error rate."""
        log_probs, lens, (tokens, token_lens) = predictions
        loss = self.hparams.ctc_cost(log_probs, tokens, lens, token_lens)
        if stage != sb.Stage.TRAIN:
            decoded = self.hparams.decoding_function(log_probs, lens)
            self.refs.extend(batch.wrd)
            self.hyps.extend(normalise_digits(self.hparams.tokenizer.sp.decode_ids(ids)) or "" for ids in decoded)
        return loss

    def on_stage_start(self, stage, epoch=None):
        self.refs, self.hyps = [], []

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log loss, DER and LR; checkpoint on the validation DER."""
        if stage == sb.Stage.TRAIN:
            self.lr = self.hparams.lr_schedule(self.progress)  # at the epoch's last step
            self.train_stats = {"loss": stage_loss}
            if self.no_valid:
                self.log_and_save(epoch, None)
            return
        der = digit_error_rate(self.refs, self.hyps)
        stats = {"loss": stage_loss, "DER": der,
                 "string_accuracy": sum(r == h for r, h in zip(self.refs, self.hyps)) / len(self.refs)}
        if stage == sb.Stage.VALID:
            self.log_and_save(epoch, stats, der)
        else:
            self.hparams.train_logger.log_stats({"Epoch loaded": self.hparams.epoch_counter.current},
                                                test_stats=stats)


__all__ = ["ConfigError", "DigitBrain", "tokenizer_file", "train_tokenizer"]
