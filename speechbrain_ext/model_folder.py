"""What a model folder holds, and where each file of it is found: the one home of that knowledge.

Three kinds of folder hold a model:

- a **training save folder** (``<run>/save``) with ``CKPT+*`` checkpoints (:func:`best_checkpoint`), the run's
  composed ``hyperparams.yaml`` one level up and ``label_encoder.txt`` beside the checkpoints; a ``CKPT+*``
  folder alone also works;
- an **exported folder** (``export.export_model``)::

      hyperparams.yaml  embedding_model.ckpt  classifier.ckpt  label_encoder.ckpt   (REQUIRED_FILES)
      threshold.json    the calibrated decision (speechbrain_ext.calibration)
      cohort.pt         the AS-norm cohort, when threshold.json is for asnorm scores

- SpeechBrain's published ``spkrec-ecapa-voxceleb`` (``hyperparams.yaml``, ``embedding_model.ckpt``, ...).

SpeechBrain's ``Pretrainer``/``from_hparams`` treat a path that does not exist as a Hugging Face hub id and try
the network; here a local path that does not exist is an error that says so (one line).
"""
import os
from pathlib import Path
from typing import Dict, Mapping, Optional

from speechbrain.utils.checkpoints import METAFNAME, Checkpoint, Checkpointer

from speechbrain_ext.builder import EMBEDDING_KEYS, ModelError, build_modules, load_state, read_nodes
from speechbrain_ext.checkpoints import ERROR_KEY, PENDING_SUFFIX
from speechbrain_ext.embeddings import EmbeddingExtractor
from speechbrain_ext.io_utils import PathLike, file_digest

HPARAMS_FILE = "hyperparams.yaml"
EMBEDDING_FILE = "embedding_model.ckpt"
CLASSIFIER_FILE = "classifier.ckpt"
LABEL_FILE = "label_encoder.ckpt"  # the Pretrainer's <loadable>.ckpt name (see speechbrain_ext.export)
TRAINING_LABEL_FILE = "label_encoder.txt"  # a training run's and SpeechBrain's published models'
THRESHOLD_FILE = "threshold.json"
COHORT_FILE = "cohort.pt"
REQUIRED_FILES = (HPARAMS_FILE, EMBEDDING_FILE, CLASSIFIER_FILE, LABEL_FILE)


def best_checkpoint(save_folder: PathLike) -> Optional[Checkpoint]:
    """The committed checkpoint of a save folder with the lowest ``ErrorRate``, else the newest.

    Built on SpeechBrain's ``Checkpointer.find_checkpoint``, which lists only folders holding ``CKPT.yaml``:
    an unfinished save (``CKPT.yaml.pending``, ``checkpoints.AtomicCheckpointer``) is ignored. Ties on
    ``ErrorRate`` go to the newest checkpoint. Checkpoints without ``ErrorRate`` (intra-epoch ones, runs without
    validation) are used only when none has it. ``None`` when ``save_folder`` does not exist or holds none.
    The one way to pick a training run's checkpoint (transfer, export, evaluation, ablation).
    """
    if not os.path.isdir(save_folder):
        return None  # Checkpointer() would create it
    finder = Checkpointer(save_folder)
    return finder.find_checkpoint(min_key=ERROR_KEY) or finder.find_checkpoint()


def best_checkpoint_epoch(save_folder: PathLike) -> Optional[int]:
    """``epoch`` recorded in the meta of ``best_checkpoint(save_folder)``, ``None`` if absent."""
    checkpoint = best_checkpoint(save_folder)
    return None if checkpoint is None else checkpoint.meta.get("epoch")


def resolve_embedding_checkpoint(path: str) -> str:
    """Path of ``embedding_model.ckpt`` for a model given as a folder (``FileNotFoundError`` of one line if none).

    ``path`` may be an exported model folder or a ``CKPT+...`` folder (both hold ``embedding_model.ckpt``), or
    a training save folder, whose :func:`best_checkpoint` is used.
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


def model_hparams_file(model_folder: PathLike) -> Path:
    """The yaml that defines the model of a folder, so nobody has to restate it.

    An exported folder and SpeechBrain's published ones hold ``hyperparams.yaml``; a training run's save folder
    (or a ``CKPT+*`` folder in it) has the run's own, the composed yaml with the command's overrides, one (or
    two) levels up. None of the three: a :class:`~speechbrain_ext.builder.ModelError`.
    """
    folder = Path(model_folder)
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / HPARAMS_FILE).is_file():
            return candidate / HPARAMS_FILE
    raise ModelError(f"{model_folder}: no {HPARAMS_FILE} in it or in the training run folder above it; "
                     "give the training yaml")


def load_extractor(model_hparams: Optional[PathLike], model_folder: PathLike, batch_size: int = 16,
                   device: str = "cpu", overrides: Optional[Mapping] = None) -> EmbeddingExtractor:
    """An :class:`EmbeddingExtractor` with the weights of a trained or exported model.

    ``model_hparams``: the yaml defining ``compute_features``/``mean_var_norm``/``embedding_model`` (``None``:
    the model folder's own, :func:`model_hparams_file`), read with ``overrides``. ``model_folder``: a training
    save folder, a ``CKPT+*`` folder or an exported model folder.
    """
    model_hparams = model_hparams_file(model_folder) if model_hparams is None else model_hparams
    modules = build_modules(read_nodes(model_hparams, EMBEDDING_KEYS, overrides))
    load_state(modules["embedding_model"], resolve_embedding_checkpoint(str(model_folder)), "embedding_model")
    return EmbeddingExtractor(modules["compute_features"], modules["mean_var_norm"],
                              modules["embedding_model"], batch_size, device)


def checkpoint_files(checkpoint_folder: PathLike) -> Dict[str, Path]:
    """``embedding_model``, ``classifier`` and ``label_encoder`` files of a run, to export.

    ``checkpoint_folder`` is a training save folder (best ``CKPT+*`` used), a ``CKPT+*`` folder, or a model
    folder holding ``label_encoder.txt`` (training, SpeechBrain's published models) or ``label_encoder.ckpt``
    (exported); the label file is looked for there and in the parent folder.
    """
    embedding = Path(resolve_embedding_checkpoint(str(checkpoint_folder)))
    labels = [folder / name for folder in (Path(checkpoint_folder), embedding.parent, embedding.parent.parent)
              for name in (TRAINING_LABEL_FILE, LABEL_FILE) if (folder / name).is_file()]
    files = {"embedding_model": embedding, "classifier": embedding.with_name(CLASSIFIER_FILE),
             "label_encoder": labels[0] if labels else None}
    missing = [n for n in ("classifier", "label_encoder") if files[n] is None or not files[n].is_file()]
    if missing:
        raise ModelError(f"{checkpoint_folder}: no {' or '.join(missing)} file beside {embedding}")
    return files


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


def model_hash(model_folder: PathLike) -> str:
    """SHA-256 of a model folder's ``embedding_model.ckpt`` and ``hyperparams.yaml`` (the voiceprint store's
    model identity).

    The yaml's ``pretrained_path:`` line is left out: it records where the folder was at export time, and a moved
    copy of a model is the same model.
    """
    digest = file_digest(Path(model_folder, EMBEDDING_FILE))
    yaml_lines = Path(model_folder, HPARAMS_FILE).read_text(encoding="utf-8").splitlines()
    digest.update("\n".join(line for line in yaml_lines if not line.startswith("pretrained_path:")).encode())
    return digest.hexdigest()
