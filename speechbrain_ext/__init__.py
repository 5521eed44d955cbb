"""speechbrain_ext: short-utterance speaker verification on top of SpeechBrain.

Library modules (one job each):

- ``audio``: reading and validating audio files and manifest rows.
- ``io_utils``: atomic writes of manifests, scores and models.
- ``dataio``: SpeechBrain datasets with random crops of concatenated rows.
- ``augment``: feature enhancement (generated noise, simulated RIRs, SpecAugment).
- ``schedulers``: preheating (LR warm-up, AAM margin warm-up, loss-weight ramps).
- ``losses``: multi-subspace CE (``SubCenterAAM``) and long-short KL (``LongShortKL``).
- ``brains``: ``PretrainBrain`` and ``TransferBrain``.
- ``metrics``/``scoring``/``embeddings``/``export``: evaluation and packaging.
"""

__version__ = "0.1.0"
