"""speechbrain_ext: short-utterance speaker verification on top of SpeechBrain.

Library modules (one job each):

- ``manifest``: manifests, trial lists and score files (``SAMPLE_RATE``; no torch).
- ``audio``: reading and validating audio files and manifest rows.
- ``io_utils``: atomic writes of manifests, scores and models; ``PathLike``; file digests.
- ``dataio``: SpeechBrain datasets with random crops of concatenated rows.
- ``simulation``: coloured noise and room impulse responses (numpy only).
- ``augment``: feature enhancement sources (generated noise, simulated RIRs).
- ``schedulers``: preheating (LR warm-up, AAM margin warm-up, loss-weight ramps).
- ``losses``: multi-subspace CE (``SubCenterAAM``) and long-short KL (``LongShortKL``).
- ``brains``: ``PretrainBrain`` and ``TransferBrain``.
- ``builder``: hparams composed from a base yaml, modules from yaml nodes.
- ``model_folder``: what a training, exported or published model folder holds and where (checkpoints,
  yaml, weights, labels, ``threshold.json``, ``cohort.pt``, the model hash).
- ``metrics``/``scoring``/``embeddings``: evaluation.
- ``calibration``: score -> log-likelihood-ratio maps, the deployed decision, ``threshold.json`` and the cohort.
- ``export``/``inference``/``hub``: packaging a model folder, loading it for verification, publishing it.
- ``comparison``: variants compared over seeds, paired, with speaker-bootstrap intervals.
- ``pipeline``: the stages ``make demo`` and the ablation run (the project's commands, resumable).
- ``access``: the door (voiceprint store, verifier, claim checks, the ``speechbrain-ext`` CLI), a subpackage.
"""

__version__ = "0.1.0"
