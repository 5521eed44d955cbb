"""Finding the embedding-model weights of a pre-trained run or an exported model.

SpeechBrain's ``Pretrainer``/``from_hparams`` treat a path that does not
exist as a Hugging Face hub id and try the network; here a local path that
does not exist is an error that says so.
"""
import os

import yaml


def resolve_embedding_checkpoint(path: str) -> str:
    """Path of ``embedding_model.ckpt`` for a model given as a folder.

    ``path`` may be an exported model folder or a ``CKPT+...`` folder (both
    hold ``embedding_model.ckpt``), or a training save folder, whose best
    checkpoint (lowest ``ErrorRate`` in ``CKPT.yaml``, else the newest) is used.

    Raises
    ------
    FileNotFoundError: one line naming the path and what is missing.
    """
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: no such folder (pre-trained model expected)")
    direct = os.path.join(path, "embedding_model.ckpt")
    if os.path.isfile(direct):
        return direct
    ckpts = [os.path.join(path, d) for d in os.listdir(path)
             if d.startswith("CKPT+") and os.path.isfile(os.path.join(path, d, "embedding_model.ckpt"))]
    if not ckpts:
        raise FileNotFoundError(f"{path}: no embedding_model.ckpt here nor in a CKPT+* subfolder")

    def rank(ckpt: str):
        with open(os.path.join(ckpt, "CKPT.yaml")) as f:
            meta = yaml.safe_load(f) or {}
        return (meta.get("ErrorRate", float("inf")), -os.path.getmtime(ckpt))

    return os.path.join(min(ckpts, key=rank), "embedding_model.ckpt")
