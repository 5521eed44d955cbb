"""Brains: ``PretrainBrain`` (pre-training), ``TransferBrain`` (transfer learning), ``DigitBrain`` (digit recogniser)."""
from speechbrain_ext.brains.base import ConfigError, NonFiniteLossError, RecipeBrain
from speechbrain_ext.brains.digits import DigitBrain
from speechbrain_ext.brains.pretrain import PretrainBrain
from speechbrain_ext.brains.transfer import TransferBrain

__all__ = ["ConfigError", "DigitBrain", "NonFiniteLossError", "PretrainBrain", "RecipeBrain", "TransferBrain"]
