"""Losses of the transfer stage.

- ``SubCenterAAM``: the paper's "multi-subspace cross-entropy" (sub-center
  AAM-softmax on cosine-classifier outputs); ``SubspaceClassifier`` gives the
  alternative M-subspace reading; ``set_margin``/``margin_of`` drive the margin
  warm-up of ``SubCenterAAM`` or SpeechBrain's AAM alike.
- ``LongShortKL``: the paper's "long/short embedding relative entropy".
"""

from speechbrain_ext.losses.long_short_kl import LongShortKL, LongShortKLDetails
from speechbrain_ext.losses.subcenter_aam import (
    SubCenterAAM,
    SubCenterAAMDetails,
    SubspaceClassifier,
    margin_of,
    set_margin,
)

__all__ = [
    "LongShortKL",
    "LongShortKLDetails",
    "SubCenterAAM",
    "SubCenterAAMDetails",
    "SubspaceClassifier",
    "margin_of",
    "set_margin",
]
