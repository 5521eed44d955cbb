"""What every Brain of the project adds to SpeechBrain's ``Brain``: the speaker Brains and the digit recogniser.

- ``progress``: the fractional epoch ``t`` of the current step, restored by intra-epoch checkpoints, for
  stateless schedules (``speechbrain_ext.schedulers``) that resume exactly;
- a non-finite loss stops training with a message naming the batch, before any optimiser step, so no
  checkpoint holds the bad update;
- DDP on CPU (gloo) with plain BatchNorm (SpeechBrain converts to ``SyncBatchNorm``, GPU only);
- checkpoint, then log, once per epoch: on the validation error (meta ``ErrorRate``, which
  ``checkpoints.best_checkpoint`` minimises), or every epoch when there is no validation set.
"""
from typing import Optional

import speechbrain as sb
import torch
from torch.nn.parallel import DistributedDataParallel

from speechbrain_ext.checkpoints import ERROR_KEY


class ConfigError(ValueError):
    """Hparams that cannot work together; the message is one line saying which and why."""


class NonFiniteLossError(FloatingPointError):
    """Training loss became NaN/inf; the message names the epoch, step and utterances."""


class RecipeBrain(sb.Brain):
    """SpeechBrain's ``Brain`` with the project's schedules, guards, DDP wrapping and checkpoint/log order.

    Subclasses set ``self.batch_ids`` in ``on_fit_batch_start``, ``self.train_stats`` at the end of each
    training stage and ``self.lr``; ``log_meta`` adds their own per-epoch figures. Hparams read:
    ``epoch_counter``, ``train_logger``, ``select_checkpoint`` (``valid``: keep the checkpoint of lowest
    validation error; ``last``: the last epoch's).
    """

    steps_per_epoch: int = 1
    lr: float = 0.0
    no_valid: bool = False
    batch_ids: tuple = ()
    train_stats: Optional[dict] = None

    def make_dataloader(self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs):
        """SpeechBrain's loader; remembers the number of training batches per epoch."""
        loader = super().make_dataloader(dataset, stage, ckpt_prefix, **loader_kwargs)
        if stage == sb.Stage.TRAIN:
            self.steps_per_epoch = max(len(loader), 1)
        return loader

    @property
    def progress(self) -> float:
        """Fractional epoch ``t`` of the current step (0.0 at the first step of epoch 1), from the epoch counter
        and ``self.step``, both restored from an intra-epoch checkpoint, so the schedules resume exactly."""
        return (self.hparams.epoch_counter.current - 1) + (self.step - 1) / self.steps_per_epoch

    def check_loss_isfinite(self, loss: torch.Tensor) -> None:
        """Stop at once on a non-finite loss, naming the batch (before any update)."""
        if not torch.isfinite(loss):
            ids = ", ".join(self.batch_ids[:4]) + (", ..." if len(self.batch_ids) > 4 else "")
            raise NonFiniteLossError(f"non-finite training loss ({loss.item()}) at epoch "
                                     f"{self.hparams.epoch_counter.current}, step {self.step}, batch [{ids}]; "
                                     "stopped before the update, so the last checkpoint is intact")

    def log_meta(self, epoch: int) -> dict:
        """The per-epoch figures logged before the train and valid stats."""
        return {"epoch": epoch, "lr": round(self.lr, 8)}

    def log_and_save(self, epoch: int, valid_stats: Optional[dict], error: Optional[float] = None) -> None:
        """Checkpoint (on the validation ``error``, else by epoch), then log: a run killed in between does not
        log an epoch twice."""
        if valid_stats is None or self.hparams.select_checkpoint == "last":
            # without ERROR_KEY in the meta, model_folder.best_checkpoint takes the newest
            meta = {"epoch": epoch, **({} if valid_stats is None else {"valid_error": error})}
            self.checkpointer.save_and_keep_only(meta=meta, max_keys=["epoch"])
        else:
            self.checkpointer.save_and_keep_only(meta={ERROR_KEY: error, "epoch": epoch}, min_keys=[ERROR_KEY])
        self.hparams.train_logger.log_stats(self.log_meta(epoch), train_stats=self.train_stats,
                                            valid_stats=valid_stats)

    def _wrap_distributed(self) -> None:
        """DDP on CPU (gloo) with plain BatchNorm; SpeechBrain's wrapping otherwise.

        SpeechBrain 1.1.2 converts every BatchNorm to ``SyncBatchNorm``, which only runs on GPUs, so
        ``torchrun ... --distributed_backend=gloo`` on CPU fails in ``DistributedDataParallel``. Buffers still
        follow rank 0 (``broadcast_buffers``); parameters are all-reduced as usual.

        A private hook, because no public way exists: the conversion is unconditional, and the public
        ``on_fit_start`` that calls this hook also calls the private ``_compile``, so overriding it instead
        would copy SpeechBrain's body. tests/test_pretrain_recipe.py fails if SpeechBrain renames the hook,
        stops calling it from ``on_fit_start`` or stops converting BatchNorm.
        """
        if not (self.distributed_launch and str(self.device).startswith("cpu")):
            super()._wrap_distributed()
            return
        for name, module in self.modules.items():
            if any(p.requires_grad for p in module.parameters()):
                self.modules[name] = DistributedDataParallel(
                    module, device_ids=None, find_unused_parameters=self.find_unused_parameters)

    def fit(self, epoch_counter, train_set, valid_set=None, **kwargs):
        """SpeechBrain's ``fit``; checkpoints after training when there is no valid set."""
        self.no_valid = valid_set is None
        return super().fit(epoch_counter, train_set, valid_set, **kwargs)
