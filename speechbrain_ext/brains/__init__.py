"""Brains: ``PretrainBrain`` (pre-training) and ``TransferBrain`` (transfer learning)."""
from speechbrain_ext.brains.pretrain import NonFiniteLossError, PretrainBrain
from speechbrain_ext.brains.transfer import TransferBrain

__all__ = ["NonFiniteLossError", "PretrainBrain", "TransferBrain"]
