"""Export a trained model as a folder SpeechBrain's ``SpeakerRecognition`` loads offline.

Model folder written by :func:`export_model`::

    hyperparams.yaml      inference yaml: Fbank, sentence InputNormalization,
                          ECAPA and Classifier copied from the training yaml,
                          CategoricalEncoder and a Pretrainer
    embedding_model.ckpt  classifier.ckpt  label_encoder.txt
    threshold.json        decision threshold calibrated by recipes/evaluate.py
    config.json           {"speechbrain_interface": "SpeakerRecognition"}
    README.md             model card with hub front matter and metrics

Offline loading (SpeechBrain issues #1253/#2699): the Pretrainer's paths are
``<pretrained_path>/<file>`` and ``pretrained_path`` defaults to the folder's
absolute path at export time, never to a hub id, so
``SpeakerRecognition.from_hparams(source=<folder>, savedir=...)`` reads only
local files. A moved folder is loaded with
``overrides={"pretrained_path": <new folder>}``, which :func:`load_verifier`
always passes. The copy pushed by :func:`push_to_hub` has
``pretrained_path: <repo id>`` instead.

The architecture is read from the training yaml without instantiating it:
its references are resolved (``hyperpyyaml.resolve_references``, after
filling ``!PLACEHOLDER`` keys with a dummy value) and the
``compute_features``/``mean_var_norm``/``embedding_model``/``classifier``
nodes are copied verbatim, so the exported ECAPA has the training arguments.
The classifier's ``out_neurons`` is taken from ``classifier.ckpt``
(training commands often override it).
"""
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Union

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from speechbrain.inference.speaker import SpeakerRecognition

from speechbrain_ext.embeddings import EmbeddingExtractor
from speechbrain_ext.io_utils import atomic_copy, atomic_write
from speechbrain_ext.pretrained import resolve_embedding_checkpoint

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
EMBEDDING_KEYS = ("compute_features", "mean_var_norm", "embedding_model")
MODEL_KEYS = EMBEDDING_KEYS + ("classifier",)
REQUIRED_FILES = ("hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt", "label_encoder.txt")
DEFAULT_THRESHOLD = 0.25  # SpeechBrain's verify_batch default, used only without threshold.json


class ExportError(ValueError):
    """A problem with the inputs or outputs of export; the message is one line."""


# ----------------------------------------------------------- reading the yaml
def _yaml() -> ruamel.yaml.YAML:
    """Round-trip ruamel loader/dumper (keeps ``!new:`` tags and comments)."""
    y = ruamel.yaml.YAML()
    y.width = 120
    return y


def read_model_nodes(
    hparams_file: PathLike, keys: Sequence[str] = MODEL_KEYS, overrides: Optional[Mapping] = None
) -> Dict[str, object]:
    """The yaml nodes of ``keys``, with references resolved, not instantiated.

    ``!PLACEHOLDER`` keys not in ``overrides`` are set to ``"unused"``
    (they are data paths, not architecture).

    Raises
    ------
    ExportError
        If the file is missing or lacks one of ``keys``.
    """
    if not os.path.isfile(hparams_file):
        raise ExportError(f"{hparams_file}: no such hparams file")
    with open(hparams_file, encoding="utf-8") as f:
        raw = _yaml().load(f)
    fill = {k: "unused" for k, v in raw.items()
            if getattr(getattr(v, "tag", None), "value", None) == "!PLACEHOLDER"}
    fill.update(overrides or {})
    with open(hparams_file, encoding="utf-8") as f:
        tree = _yaml().load(resolve_references(f, fill))
    missing = [k for k in keys if k not in tree]
    if missing:
        raise ExportError(f"{hparams_file}: no {', '.join(missing)} key(s)")
    return {k: tree[k] for k in keys}


def _dump(nodes: Mapping[str, object]) -> str:
    """Yaml text of ``nodes`` (tags and inline comments kept, whole-line comments dropped)."""
    stream = io.StringIO()
    _yaml().dump(dict(nodes), stream)
    lines = stream.getvalue().splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#")) + "\n"


def build_modules(nodes: Mapping[str, object]) -> Dict[str, torch.nn.Module]:
    """Instantiate yaml nodes from :func:`read_model_nodes` (fresh weights)."""
    return load_hyperpyyaml(_dump(nodes))


def _check_sentence_norm(nodes: Mapping[str, object], hparams_file: PathLike) -> None:
    """Export and ONNX assume per-utterance mean normalisation (no stored statistics)."""
    norm = nodes["mean_var_norm"]
    if norm.get("norm_type") != "sentence":
        raise ExportError(f"{hparams_file}: mean_var_norm must be InputNormalization with norm_type: sentence")


# ---------------------------------------------------------- the checkpoint
def checkpoint_files(checkpoint_folder: PathLike) -> Dict[str, Path]:
    """``embedding_model``, ``classifier`` and ``label_encoder`` files of a run.

    ``checkpoint_folder`` is a training save folder (best ``CKPT+*`` used),
    a ``CKPT+*`` folder, or an exported model folder; ``label_encoder.txt``
    is looked for there and in the parent folder.
    """
    embedding = Path(resolve_embedding_checkpoint(str(checkpoint_folder)))
    files = {"embedding_model": embedding, "classifier": embedding.with_name("classifier.ckpt")}
    for folder in (Path(checkpoint_folder), embedding.parent, embedding.parent.parent):
        if (folder / "label_encoder.txt").is_file():
            files["label_encoder"] = folder / "label_encoder.txt"
            break
    missing = [n for n in ("classifier", "label_encoder") if n not in files or not files[n].is_file()]
    if missing:
        raise ExportError(f"{checkpoint_folder}: no {' or '.join(missing)} file beside {embedding}")
    return files


def load_state(module: torch.nn.Module, path: PathLike, name: str) -> None:
    """Load a SpeechBrain ``.ckpt`` state dict strictly, with a one-line error on mismatch."""
    state = torch.load(path, map_location="cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise ExportError(f"{path}: does not fit the {name} of the hparams file ({first})") from None


def load_extractor(
    model_hparams: PathLike,
    model_folder: PathLike,
    batch_size: int = 16,
    device: str = "cpu",
    overrides: Optional[Mapping] = None,
) -> EmbeddingExtractor:
    """An :class:`EmbeddingExtractor` with the weights of a trained or exported model.

    Arguments
    ---------
    model_hparams : path
        Yaml defining ``compute_features``/``mean_var_norm``/``embedding_model``:
        the training yaml or an exported ``hyperparams.yaml``.
    model_folder : path
        Training save folder, ``CKPT+*`` folder or exported model folder.
    batch_size, device
        As in :class:`EmbeddingExtractor`.
    overrides : mapping, optional
        Yaml overrides applied when reading ``model_hparams``.
    """
    modules = build_modules(read_model_nodes(model_hparams, EMBEDDING_KEYS, overrides))
    load_state(modules["embedding_model"], resolve_embedding_checkpoint(str(model_folder)), "embedding_model")
    return EmbeddingExtractor(modules["compute_features"], modules["mean_var_norm"],
                              modules["embedding_model"], batch_size, device)


# ------------------------------------------------------------------ writing
INFERENCE_TEMPLATE = """\
# ############################################################################
# Speaker verification model exported by speechbrain_ext (recipes/export.py).
# Load offline:
#   SpeakerRecognition.from_hparams(source=<this folder>, savedir=<any>)
# If this folder was moved, add overrides={{"pretrained_path": <this folder>}}.
# ############################################################################

pretrained_path: {pretrained_path}  # folder (or hub repo) holding the files below
sample_rate: 16000

# ---- Features, model and classifier (copied from {training_yaml}) ----------
{nodes}
label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    classifier: !ref <classifier>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


def inference_yaml(nodes: Mapping[str, object], pretrained_path: str, training_yaml: str) -> str:
    """Text of the model folder's ``hyperparams.yaml``."""
    return INFERENCE_TEMPLATE.format(pretrained_path=json.dumps(pretrained_path),
                                     training_yaml=os.path.basename(training_yaml), nodes=_dump(nodes))


def _classifier_size(nodes: Dict[str, object], classifier_ckpt: Path) -> None:
    """Set the classifier node's ``out_neurons`` to the checkpoint's number of rows."""
    weight = torch.load(classifier_ckpt, map_location="cpu").get("weight")
    if weight is not None and "out_neurons" in nodes["classifier"]:
        nodes["classifier"]["out_neurons"] = int(weight.shape[0])


def model_card(results: Optional[Mapping[str, Mapping]], threshold: Optional[Mapping], name: str) -> str:
    """Model card ``README.md`` with hub front matter and the evaluation table."""
    lines = [
        "---", "license: apache-2.0", "library_name: speechbrain", "pipeline_tag: audio-classification",
        "tags:", "- speechbrain", "- speaker-verification", "- speaker-recognition", "- ECAPA-TDNN",
        "- short-utterance", "---", "", f"# {name}: short-utterance speaker verification (ECAPA-TDNN)", "",
        "Exported by speechbrain_ext. Load without network access:", "", "```python",
        "from speechbrain.inference.speaker import SpeakerRecognition",
        f'model = SpeakerRecognition.from_hparams(source="path/to/{name}", savedir="tmp_{name}",',
        f'                                        overrides={{"pretrained_path": "path/to/{name}"}})',
        'score, _ = model.verify_files("a.wav", "b.wav")', "```", "",
    ]
    if threshold is not None:
        lines += [f"Decision threshold (cosine): **{threshold['threshold']:.4f}**, calibrated at "
                  f"{threshold.get('method', '?')} on `{threshold.get('calibration_trials', '?')}` "
                  "(`threshold.json`). `SpeakerRecognition.verify_files` uses 0.25 regardless; use "
                  "`speechbrain_ext.export.load_verifier` to apply the calibrated threshold.", ""]
    if results:
        lines += ["## Evaluation", "", "| condition | trials | EER (%) | minDCF (p=0.01) | minDCF (p=0.05) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {c} | {r['num_trials']} | {100 * r['eer']:.2f} | {r['min_dcf_0.01']:.4f} | "
                  f"{r['min_dcf_0.05']:.4f} |" for c, r in results.items()]
        lines.append("")
    return "\n".join(lines)


def _read_json(path: Optional[PathLike], what: str) -> Optional[dict]:
    """Parse an optional JSON file, with a one-line error."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ExportError(f"{path}: cannot read the {what} ({err})") from None


def export_model(
    hparams_file: PathLike,
    checkpoint_folder: PathLike,
    output_folder: PathLike,
    threshold_file: Optional[PathLike] = None,
    results_json: Optional[PathLike] = None,
    overrides: Optional[Mapping] = None,
) -> Path:
    """Write the model folder (see module docstring); returns its absolute path.

    Every file is written atomically; the weights are checked to load strictly
    into the architecture of ``hparams_file`` before anything is written.
    """
    out = Path(output_folder).absolute()
    files = checkpoint_files(checkpoint_folder)
    nodes = read_model_nodes(hparams_file, MODEL_KEYS, overrides)
    _check_sentence_norm(nodes, hparams_file)
    _classifier_size(nodes, files["classifier"])
    modules = build_modules(nodes)
    for name in ("embedding_model", "classifier"):
        load_state(modules[name], files[name], name)
    threshold = _read_json(threshold_file, "threshold file")
    if threshold is not None and not isinstance(threshold.get("threshold"), (int, float)):
        raise ExportError(f"{threshold_file}: no numeric 'threshold' entry")
    results = _read_json(results_json, "results")

    for name, src in files.items():
        atomic_copy(src, out / src.name)
    with atomic_write(out / "hyperparams.yaml") as f:
        f.write(inference_yaml(nodes, str(out), str(hparams_file)))
    with atomic_write(out / "config.json") as f:
        json.dump({"speechbrain_interface": "SpeakerRecognition"}, f, indent=2)
    if threshold is not None:
        with atomic_write(out / "threshold.json") as f:
            json.dump(threshold, f, indent=2)
    with atomic_write(out / "README.md") as f:
        f.write(model_card(results, threshold, out.name))
    return out


# ------------------------------------------------------------------ loading
class CalibratedSpeakerRecognition(SpeakerRecognition):
    """``SpeakerRecognition`` whose decisions use the model's calibrated threshold.

    ``threshold`` comes from ``threshold.json`` (set by :func:`load_verifier`);
    ``verify_batch``/``verify_files`` use it unless a threshold is passed, and
    accept ``score >= threshold`` as ``speechbrain_ext.metrics`` does
    (SpeechBrain's own ``verify_batch`` uses ``>`` and 0.25).
    """

    threshold: float = DEFAULT_THRESHOLD

    def verify_batch(self, wavs1, wavs2, wav1_lens=None, wav2_lens=None, threshold=None):
        """Cosine scores ``[B, 1]`` of two waveform batches ``[B, T]`` and decisions ``score >= threshold``."""
        threshold = self.threshold if threshold is None else threshold
        score = self.similarity(self.encode_batch(wavs1, wav1_lens), self.encode_batch(wavs2, wav2_lens))
        return score, score >= threshold


def check_model_folder(folder: PathLike) -> Path:
    """Absolute path of an exported model folder, after checking its files.

    Raises
    ------
    FileNotFoundError
        "no such folder" for a path that does not exist (SpeechBrain would
        try it as a hub id), or the list of missing files.
    """
    path = Path(folder).absolute()
    if not path.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (an exported model folder is expected)")
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: model folder is missing {', '.join(missing)}")
    return path


def load_verifier(folder: PathLike, savedir: Optional[PathLike] = None) -> CalibratedSpeakerRecognition:
    """Load an exported model folder offline, with its calibrated threshold.

    Arguments
    ---------
    folder : path
        Model folder written by :func:`export_model` (may have been moved).
    savedir : path, optional
        Where SpeechBrain links the files; default: a new temporary folder
        (a reused savedir keeps stale links from another model).

    Returns
    -------
    CalibratedSpeakerRecognition
        With ``.threshold`` from ``threshold.json`` (0.25 and a warning without it).
    """
    from speechbrain.utils.fetching import FetchConfig

    path = check_model_folder(folder)
    savedir = Path(savedir) if savedir is not None else Path(tempfile.mkdtemp(prefix="sbext_model_"))
    model = CalibratedSpeakerRecognition.from_hparams(
        source=str(path), savedir=str(savedir), overrides={"pretrained_path": str(path)},
        fetch_config=FetchConfig(allow_network=False, overwrite=True),
    )
    threshold = _read_json(path / "threshold.json", "threshold file") if (path / "threshold.json").is_file() else None
    if threshold is None:
        logger.warning("%s: no threshold.json; using SpeechBrain's default threshold %s", folder, DEFAULT_THRESHOLD)
    else:
        model.threshold = float(threshold["threshold"])
    return model


# -------------------------------------------------------------- hub upload
def push_to_hub(folder: PathLike, repo_id: str, token: Optional[str] = None) -> str:
    """Upload a model folder to the Hugging Face hub with ``huggingface_hub.upload_folder``.

    The uploaded ``hyperparams.yaml`` has ``pretrained_path: <repo_id>`` so
    that ``from_hparams(source=repo_id)`` finds the files on the hub.

    Returns
    -------
    str
        The commit URL reported by the hub.

    Raises
    ------
    ExportError
        One line when the hub cannot be reached or refuses the upload.
    """
    import huggingface_hub

    path = check_model_folder(folder)
    with tempfile.TemporaryDirectory(prefix="sbext_push_") as staging:
        shutil.copytree(path, staging, dirs_exist_ok=True)
        yaml_text = (path / "hyperparams.yaml").read_text(encoding="utf-8")
        lines = [f"pretrained_path: {json.dumps(repo_id)}  # hub repo holding the files below"
                 if line.startswith("pretrained_path:") else line for line in yaml_text.splitlines()]
        Path(staging, "hyperparams.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            huggingface_hub.create_repo(repo_id, token=token, exist_ok=True)
            commit = huggingface_hub.upload_folder(
                repo_id=repo_id, folder_path=staging, repo_type="model", token=token,
                commit_message="Upload speechbrain_ext speaker verification model",
            )
        except Exception as err:  # noqa: BLE001 -- any hub/network failure becomes one line
            raise ExportError(f"push to hub {repo_id} failed: {type(err).__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return str(getattr(commit, "commit_url", commit))


def files_in(folder: PathLike) -> List[str]:
    """Sorted file names of a folder (for messages and tests)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file())
