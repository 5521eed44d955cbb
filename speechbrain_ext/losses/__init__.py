"""Losses of the transfer stage.

- ``SubCenterAAM``: the paper's "multi-subspace cross-entropy" (sub-center AAM-softmax on cosine-classifier
  outputs); ``SubspaceClassifier`` gives the alternative M-subspace reading.
- ``LongShortKL``: the paper's "long/short embedding relative entropy".
"""

from speechbrain_ext.losses.long_short_kl import LongShortKL
from speechbrain_ext.losses.subcenter_aam import SubCenterAAM, SubspaceClassifier

__all__ = ["LongShortKL", "SubCenterAAM", "SubspaceClassifier"]
