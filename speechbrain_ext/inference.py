"""Loading an exported model folder (``export.export_model``, possibly moved) offline, with its calibrated score.

:func:`load_verifier` gives SpeechBrain's ``SpeakerRecognition`` (every method of it works: ``encode_batch``,
``verify_files``, ``classify_file``) that scores and decides as the folder was calibrated
(``calibration.load_scoring``: cosine or AS-norm with the folder's cohort, and the threshold of
``threshold.json``).
"""
import tempfile
from pathlib import Path
from typing import Optional

import torch
from speechbrain.inference.speaker import SpeakerRecognition
from speechbrain.utils.fetching import FetchConfig

from speechbrain_ext.calibration import DEFAULT_THRESHOLD, load_scoring
from speechbrain_ext.manifest import PathLike
from speechbrain_ext.scoring import Scoring

LABEL_FILE = "label_encoder.ckpt"  # the Pretrainer's <loadable>.ckpt name (see speechbrain_ext.export)
REQUIRED_FILES = ("hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt", LABEL_FILE)


class CalibratedSpeakerRecognition(SpeakerRecognition):
    """``SpeakerRecognition`` that scores and decides as the model was calibrated.

    ``scoring`` and ``threshold`` are set by :func:`load_verifier`; ``verify_batch``/``verify_files`` use them
    unless a threshold is passed, and accept ``score >= threshold`` as ``speechbrain_ext.metrics`` does
    (SpeechBrain's own ``verify_batch`` returns cosine scores and uses ``>`` and 0.25).
    """

    threshold: float = DEFAULT_THRESHOLD
    scoring: Scoring = Scoring()

    def verify_batch(self, wavs1, wavs2, wav1_lens=None, wav2_lens=None, threshold=None):
        """Scores ``[B, 1]`` of two waveform batches ``[B, T]`` and decisions ``score >= threshold``."""
        threshold = self.threshold if threshold is None else threshold
        emb1 = self.encode_batch(wavs1, wav1_lens).squeeze(1)  # [B, D]
        emb2 = self.encode_batch(wavs2, wav2_lens).squeeze(1)  # [B, D]
        pairs = [str(i) for i in range(len(emb1))]
        score = self.scoring(list(zip(pairs, pairs)), (pairs, emb1), (pairs, emb2))  # [B]
        score = torch.from_numpy(score).float().unsqueeze(1)
        return score, score >= threshold


def check_model_folder(folder: PathLike) -> Path:
    """Absolute path of an exported model folder, after checking its files.

    ``FileNotFoundError`` for a path that does not exist (SpeechBrain would try it as a hub id) or the list of
    missing files.
    """
    path = Path(folder).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (an exported model folder is expected)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: model folder is missing {', '.join(missing)}")
    return path


def load_verifier(folder: PathLike, savedir: Optional[PathLike] = None) -> CalibratedSpeakerRecognition:
    """Load an exported model folder offline, with ``.scoring`` and ``.threshold`` from ``calibration.load_scoring``.

    ``savedir``, where SpeechBrain links the files, defaults to a new temporary folder (a reused savedir keeps
    stale links from another model).
    """
    path = check_model_folder(folder)
    savedir = Path(savedir) if savedir is not None else Path(tempfile.mkdtemp(prefix="sbext_model_"))
    model = CalibratedSpeakerRecognition.from_hparams(
        source=str(path), savedir=str(savedir), fetch_config=FetchConfig(allow_network=False, overwrite=True))
    model.scoring, model.threshold = load_scoring(path, model.mods)
    return model
