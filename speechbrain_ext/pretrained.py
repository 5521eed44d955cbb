"""Finding the embedding-model weights of a pre-trained run or an exported model.

SpeechBrain's ``Pretrainer``/``from_hparams`` treat a path that does not exist as a Hugging Face hub id and try
the network; here a local path that does not exist is an error that says so.
"""
import os

from speechbrain.utils.checkpoints import METAFNAME

from speechbrain_ext.checkpoints import PENDING_SUFFIX, best_checkpoint

EMBEDDING_FILE = "embedding_model.ckpt"


def resolve_embedding_checkpoint(path: str) -> str:
    """Path of ``embedding_model.ckpt`` for a model given as a folder (``FileNotFoundError`` of one line if none).

    ``path`` may be an exported model folder or a ``CKPT+...`` folder (both hold ``embedding_model.ckpt``), or
    a training save folder, whose ``best_checkpoint`` (lowest ``ErrorRate``, else the newest; unfinished saves
    ignored) is used.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such folder (pre-trained model expected)")
    if os.path.exists(os.path.join(path, METAFNAME + PENDING_SUFFIX)):
        raise FileNotFoundError(f"{path}: unfinished checkpoint (the run was stopped while "
                                "saving it); use its save folder or another checkpoint")
    direct = os.path.join(path, EMBEDDING_FILE)
    if os.path.isfile(direct):
        return direct
    checkpoint = best_checkpoint(path)
    if checkpoint is None or "embedding_model" not in checkpoint.paramfiles:
        raise FileNotFoundError(f"{path}: no {EMBEDDING_FILE} here nor in a committed CKPT+* subfolder")
    return str(checkpoint.paramfiles["embedding_model"])
