"""Transfer brain: pre-trained ECAPA adapted to short digit strings with the joint loss.

    L = L_msce(long) + L_msce(short) + lambda(t) * L_KL(short || long)

``L_msce`` is the multi-subspace cross-entropy (``SubCenterAAM``), ``L_KL`` the
long-short relative entropy (``LongShortKL``) on margin-free sub-center
logits, ``lambda(t)`` a ramp over the first epochs (``kl_weight``). Each
utterance gives a long crop (``sig``) and a short crop inside it
(``sig_short``); both go through the network in one forward, the short crops
zero-padded to the long length with their relative lengths.
"""
import os
from typing import Tuple

import speechbrain as sb
import torch
import torch.nn.functional as F
from speechbrain.utils.distributed import run_on_main
from speechbrain.utils.parameter_transfer import Pretrainer

from speechbrain_ext.brains.pretrain import PretrainBrain
from speechbrain_ext.pretrained import resolve_embedding_checkpoint


class TransferBrain(PretrainBrain):
    """``PretrainBrain`` with a pre-trained backbone and the long-short joint loss.

    Extra hparams: ``pretrained_path`` (a checkpoint folder, a training save
    folder or an exported model folder; null trains from scratch),
    ``kl_loss`` (``LongShortKL``), ``kl_weight`` (a schedule of ``t``),
    ``short_loss_weight`` (weight of L_msce on the short crop; 0 for the
    plain fine-tuning baseline).
    """

    def on_fit_start(self) -> None:
        """Load the pre-trained embedding model, then SpeechBrain's fit start (which
        resumes this run's own checkpoint, if any, over the pre-trained weights)."""
        if self.hparams.pretrained_path:
            ckpt = resolve_embedding_checkpoint(self.hparams.pretrained_path)
            pretrainer = Pretrainer(
                collect_in=os.path.join(self.hparams.save_folder, "pretrained"),
                loadables={"embedding_model": self.modules.embedding_model},
                paths={"embedding_model": ckpt})
            run_on_main(pretrainer.collect_files)
            pretrainer.load_collected()
        super().on_fit_start()

    def on_fit_batch_start(self, batch, should_step: bool) -> None:
        super().on_fit_batch_start(batch, should_step)
        self.kl_weight = self.hparams.kl_weight(self.progress)

    def compute_forward(self, batch, stage):
        """Training: one forward of ``[long; short]``; returns long and short outputs.

        Returns (TRAIN)
        ---------------
        ``((cos_long [B,1,N], emb_long [B,1,D]), (cos_short, emb_short), spk [B,1])``.
        """
        if stage != sb.Stage.TRAIN:
            return super().compute_forward(batch, stage)
        batch = batch.to(self.device)
        wavs, lens = self.stack_long_short(batch.sig, batch.sig_short)
        spk = batch.spk_id_encoded.data
        batch_size = spk.shape[0]
        wavs, lens, _ = self.augment_waveforms(wavs, lens, torch.cat([spk, spk]))
        if wavs.shape[0] != 2 * batch_size:
            raise ValueError("TransferBrain needs a wav_augment that keeps the batch size "
                             "(concat_original: False, parallel_augment: False)")
        emb = self.embed(wavs, lens, stage)
        cos = self.modules.classifier(emb)
        return (cos[:batch_size], emb[:batch_size]), (cos[batch_size:], emb[batch_size:]), spk

    @staticmethod
    def stack_long_short(long: Tuple[torch.Tensor, torch.Tensor],
                         short: Tuple[torch.Tensor, torch.Tensor]
                         ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Zero-pad short crops to the long crops' length and stack them.

        Arguments
        ---------
        long, short : (wavs [B, T_l] / [B, T_s], relative lengths [B]).

        Returns
        -------
        wavs ``[2B, T_l]``, relative lengths ``[2B]``.

        Example
        -------
        >>> w, l = TransferBrain.stack_long_short((torch.ones(2, 8), torch.ones(2)),
        ...                                       (torch.ones(2, 4), torch.tensor([1., .5])))
        >>> w.shape, l.tolist()
        (torch.Size([4, 8]), [1.0, 1.0, 0.5, 0.25])
        """
        (long_wavs, long_lens), (short_wavs, short_lens) = long, short
        frames = long_wavs.shape[1]
        short_lens = short_lens * (short_wavs.shape[1] / frames)
        short_wavs = F.pad(short_wavs, (0, frames - short_wavs.shape[1]))
        return torch.cat([long_wavs, short_wavs]), torch.cat([long_lens, short_lens])

    def compute_objectives(self, predictions, batch, stage):
        """Joint loss in training; the pre-training objective otherwise."""
        if stage != sb.Stage.TRAIN:
            return super().compute_objectives(predictions, batch, stage)
        (cos_l, emb_l), (cos_s, emb_s), spk = predictions
        cost = self.hparams.compute_cost
        loss_long = cost(cos_l, spk)
        loss_short = cost(cos_s, spk)
        kl = self.hparams.kl_loss(cost.logits(cos_s), cost.logits(cos_l), emb_s, emb_l, spk)
        self.loss_terms = {"msce_long": loss_long.detach(), "msce_short": loss_short.detach(),
                           "kl": kl.detach()}
        return loss_long + self.hparams.short_loss_weight * loss_short + self.kl_weight * kl

    def on_fit_batch_end(self, batch, outputs, loss, should_step) -> None:
        """Accumulate each loss term for the epoch log."""
        for name, value in self.loss_terms.items():
            self.term_sums[name] = self.term_sums.get(name, 0.0) + float(value)
        self.term_count += 1

    def on_stage_start(self, stage, epoch=None):
        super().on_stage_start(stage, epoch)
        self.term_sums, self.term_count = {}, 0

    def extra_train_stats(self) -> dict:
        """Epoch means of L_msce(long), L_msce(short), L_KL, and lambda."""
        terms = {k: v / max(self.term_count, 1) for k, v in self.term_sums.items()}
        return {**terms, "kl_weight": round(self.kl_weight, 4)}
