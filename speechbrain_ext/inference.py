"""Loading an exported model folder (``export.export_model``, possibly moved) offline, with its calibrated score.

:func:`load_verifier` gives SpeechBrain's ``SpeakerRecognition`` (every method of it works: ``encode_batch``,
``verify_files``, ``classify_file``) that scores and decides as the folder was calibrated
(``calibration.load_scoring``: cosine or AS-norm with the folder's cohort, and the decision of
``threshold.json``, a :class:`~speechbrain_ext.calibration.Calibration`).
"""
import tempfile
from pathlib import Path
from typing import Optional

import torch
from speechbrain.inference.speaker import SpeakerRecognition
from speechbrain.utils.fetching import FetchConfig

from speechbrain_ext.calibration import Calibration, load_scoring
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.model_folder import check_model_folder
from speechbrain_ext.scoring import Scoring


class CalibratedSpeakerRecognition(SpeakerRecognition):
    """``SpeakerRecognition`` that scores and decides as the model was calibrated.

    ``scoring`` and ``calibration`` are set by :func:`load_verifier`; ``verify_batch``/``verify_files`` score with
    them and decide with ``calibration.accept`` (the test duration of ``wavs2``), or ``score >= threshold`` when a
    threshold is passed (SpeechBrain's own ``verify_batch`` returns cosine scores and uses ``>`` and 0.25).
    """

    calibration: Calibration = Calibration()
    scoring: Scoring = Scoring()

    def verify_batch(self, wavs1, wavs2, wav1_lens=None, wav2_lens=None, threshold=None):
        """Scores ``[B, 1]`` of enrolment ``wavs1`` and test ``wavs2`` batches ``[B, T]``, and decisions ``[B, 1]``."""
        calibration = self.calibration if threshold is None else self.calibration.with_threshold(threshold)
        emb1 = self.encode_batch(wavs1, wav1_lens).squeeze(1)  # [B, D]
        emb2 = self.encode_batch(wavs2, wav2_lens).squeeze(1)  # [B, D]
        pairs = [str(i) for i in range(len(emb1))]
        score = self.scoring(list(zip(pairs, pairs)), (pairs, emb1), (pairs, emb2))  # [B]
        lens = torch.ones(len(wavs2)) if wav2_lens is None else wav2_lens.detach().cpu().float()
        seconds = (lens * wavs2.shape[1] / SAMPLE_RATE).numpy()  # [B] test durations
        accepted = torch.from_numpy(calibration.accept(score, seconds)).unsqueeze(1)
        return torch.from_numpy(score).float().unsqueeze(1), accepted


def load_verifier(folder: PathLike, savedir: Optional[PathLike] = None) -> CalibratedSpeakerRecognition:
    """Load an exported model folder offline, with ``.scoring`` and ``.calibration`` from ``calibration.load_scoring``.

    ``savedir``, where SpeechBrain links the files, defaults to a new temporary folder (a reused savedir keeps
    stale links from another model).
    """
    path = check_model_folder(folder)
    savedir = Path(savedir) if savedir is not None else Path(tempfile.mkdtemp(prefix="sbext_model_"))
    model = CalibratedSpeakerRecognition.from_hparams(
        source=str(path), savedir=str(savedir), fetch_config=FetchConfig(allow_network=False, overwrite=True))
    model.scoring, model.calibration = load_scoring(path, model.mods)
    return model
