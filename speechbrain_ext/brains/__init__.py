"""Brains: ``PretrainBrain`` (pre-training) and ``TransferBrain`` (transfer learning)."""
from speechbrain_ext.brains.pretrain import ConfigError, NonFiniteLossError, PretrainBrain
from speechbrain_ext.brains.transfer import TransferBrain

__all__ = ["ConfigError", "NonFiniteLossError", "PretrainBrain", "TransferBrain"]
