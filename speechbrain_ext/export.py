"""Export a trained model as a folder SpeechBrain's ``SpeakerRecognition`` loads offline.

Model folder written by :func:`export_model`::

    hyperparams.yaml      inference yaml: Fbank, sentence InputNormalization,
                          ECAPA and Classifier copied from the training yaml,
                          CategoricalEncoder and a Pretrainer
    embedding_model.ckpt  classifier.ckpt (one row per speaker)  label_encoder.ckpt
    threshold.json        decision threshold from recipes/evaluate.py: the score
                          it is for (cosine or asnorm), target and test FAR
    cohort.pt             AS-norm cohort (only when threshold.json is for asnorm)
    config.json           {"speechbrain_interface": "SpeakerRecognition"}
    README.md             model card with hub front matter and metrics

No path of the exporting machine is written anywhere (SpeechBrain issues
#1253/#2699: a ``pretrained_path`` naming a folder or hub id sends
``from_hparams`` to that place, not to the folder it was given). The
Pretrainer lists its loadables without ``paths``, so SpeechBrain fetches each
as ``<source>/<loadable>.ckpt`` from whatever ``source`` ``from_hparams`` was
given: the folder where it lies now, or a hub repo id after
:func:`push_to_hub`, with no ``overrides``. This is why the label encoder is
``label_encoder.ckpt`` (a ``CategoricalEncoder`` text file under the name the
Pretrainer looks for).

The architecture is read from the training yaml (by default the run's own
``hyperparams.yaml``, :func:`model_hparams_file`) without instantiating it:
its references are resolved (``hyperpyyaml.resolve_references``, after
filling ``!PLACEHOLDER`` keys with a dummy value) and the
``compute_features``/``mean_var_norm``/``embedding_model``/``classifier``
nodes are copied verbatim, so the exported ECAPA has the training arguments.
A sub-center classifier (K rows per speaker) is exported with one row per
speaker (:func:`speaker_head`), so that ``EncoderClassifier.classify_file``
decodes its argmax with ``label_encoder.ckpt``.

Scoring at the door (:func:`load_verifier`, ``speechbrain_ext.verifier``) is
the :class:`~speechbrain_ext.scoring.Scoring` that ``threshold.json`` names:
the one the threshold was measured on.
"""
import io
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.inference.speaker import SpeakerRecognition
from speechbrain.utils.checkpoints import torch_patched_state_dict_load

from speechbrain_ext.embeddings import EmbeddingExtractor, fingerprint
from speechbrain_ext.io_utils import atomic_copy, atomic_write
from speechbrain_ext.losses.subcenter_aam import dominant_subcenters
from speechbrain_ext.pretrained import resolve_embedding_checkpoint
from speechbrain_ext.scoring import SCORE_KINDS, Scoring

logger = logging.getLogger(__name__)

PathLike = Union[str, os.PathLike]
EMBEDDING_KEYS = ("compute_features", "mean_var_norm", "embedding_model")
MODEL_KEYS = EMBEDDING_KEYS + ("classifier",)
LABEL_FILE = "label_encoder.ckpt"  # the Pretrainer's <loadable>.ckpt name, see module docstring
REQUIRED_FILES = ("hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt", LABEL_FILE)
THRESHOLD_FILE = "threshold.json"
COHORT_FILE = "cohort.pt"
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
def model_hparams_file(model_folder: PathLike) -> Path:
    """The yaml that defines the model of a folder, so nobody has to restate it.

    An exported folder and SpeechBrain's published ones (e.g.
    ``spkrec-ecapa-voxceleb``) hold ``hyperparams.yaml``; a training run's
    save folder (or a ``CKPT+*`` folder in it) has the run's own
    ``hyperparams.yaml``, written by SpeechBrain with the command's overrides
    resolved, one (or two) levels up.

    Raises
    ------
    ExportError
        One line when none of the three places has one.
    """
    folder = Path(model_folder)
    for candidate in (folder, folder.parent, folder.parent.parent):
        if (candidate / "hyperparams.yaml").is_file():
            return candidate / "hyperparams.yaml"
    raise ExportError(f"{model_folder}: no hyperparams.yaml in it or in the training run folder above it; "
                      "give the training yaml")


def checkpoint_files(checkpoint_folder: PathLike) -> Dict[str, Path]:
    """``embedding_model``, ``classifier`` and ``label_encoder`` files of a run.

    ``checkpoint_folder`` is a training save folder (best ``CKPT+*`` used),
    a ``CKPT+*`` folder, or a model folder holding ``label_encoder.txt``
    (training, SpeechBrain's published models) or ``label_encoder.ckpt``
    (exported); the label file is looked for there and in the parent folder.
    """
    embedding = Path(resolve_embedding_checkpoint(str(checkpoint_folder)))
    files = {"embedding_model": embedding, "classifier": embedding.with_name("classifier.ckpt")}
    for folder in (Path(checkpoint_folder), embedding.parent, embedding.parent.parent):
        labels = [folder / name for name in ("label_encoder.txt", LABEL_FILE) if (folder / name).is_file()]
        if labels:
            files["label_encoder"] = labels[0]
            break
    missing = [n for n in ("classifier", "label_encoder") if n not in files or not files[n].is_file()]
    if missing:
        raise ExportError(f"{checkpoint_folder}: no {' or '.join(missing)} file beside {embedding}")
    return files


def load_state(module: torch.nn.Module, path: PathLike, name: str) -> None:
    """Load a SpeechBrain ``.ckpt`` state dict strictly, with a one-line error on mismatch.

    Read with SpeechBrain's own loader (``torch_patched_state_dict_load``,
    which renames keys of older SpeechBrain versions, e.g. in the published
    VoxCeleb ECAPA), but loaded strictly: SpeechBrain's parameter transfer
    only warns about missing keys, which would hide a wrong architecture.
    """
    state = torch_patched_state_dict_load(path, "cpu")
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)
        raise ExportError(f"{path}: does not fit the {name} of the hparams file ({first})") from None


def load_extractor(
    model_hparams: Optional[PathLike],
    model_folder: PathLike,
    batch_size: int = 16,
    device: str = "cpu",
    overrides: Optional[Mapping] = None,
) -> EmbeddingExtractor:
    """An :class:`EmbeddingExtractor` with the weights of a trained or exported model.

    Arguments
    ---------
    model_hparams : path, optional
        Yaml defining ``compute_features``/``mean_var_norm``/``embedding_model``;
        ``None``: the model folder's own (:func:`model_hparams_file`).
    model_folder : path
        Training save folder, ``CKPT+*`` folder or exported model folder.
    batch_size, device
        As in :class:`EmbeddingExtractor`.
    overrides : mapping, optional
        Yaml overrides applied when reading ``model_hparams``.
    """
    model_hparams = model_hparams_file(model_folder) if model_hparams is None else model_hparams
    modules = build_modules(read_model_nodes(model_hparams, EMBEDDING_KEYS, overrides))
    load_state(modules["embedding_model"], resolve_embedding_checkpoint(str(model_folder)), "embedding_model")
    return EmbeddingExtractor(modules["compute_features"], modules["mean_var_norm"],
                              modules["embedding_model"], batch_size, device)


def speaker_head(weight: torch.Tensor, num_speakers: int, assignments: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One classifier row per speaker from a cosine classifier with K rows per speaker.

    ``SubCenterAAM`` trains K sub-centers per speaker, class-major (row
    ``j*K + k`` is sub-center k of speaker j), and scores a speaker by its
    best sub-center. SpeechBrain's ``EncoderClassifier`` decodes the argmax
    row with the label encoder, so it needs one row per label. Each speaker
    keeps its dominant sub-center when training counted sub-center
    assignments (``SubCenterAAM.assignments`` ``[N, K]``, the sub-centers
    ``drop_subcenters`` keeps: ``losses.subcenter_aam.dominant_subcenters``);
    without counts it gets the mean of its normalised sub-centers::

        w[j] = (1/K) * sum_k W[j*K + k] / |W[j*K + k]|      W: [N*K, D] -> [N, D]

    With K = 1 the weight is returned unchanged.

    Raises
    ------
    ValueError
        When the rows are not a multiple of ``num_speakers``.

    Example
    -------
    >>> W = torch.tensor([[2.0, 0.0], [0.0, 3.0], [0.0, 1.0], [0.0, 1.0]])  # N=2 speakers, K=2
    >>> speaker_head(W, 2).tolist()
    [[0.5, 0.5], [0.0, 1.0]]
    >>> speaker_head(W, 2, assignments=torch.tensor([[1, 9], [4, 0]])).tolist()
    [[0.0, 3.0], [0.0, 1.0]]
    """
    rows, dim = weight.shape
    if rows % num_speakers:
        raise ValueError(f"{rows} classifier rows are not K per speaker for {num_speakers} speakers")
    num_subcenters = rows // num_speakers
    if num_subcenters == 1:
        return weight
    if assignments is not None:
        return dominant_subcenters(weight, num_subcenters, assignments)
    subcenters = weight.reshape(num_speakers, num_subcenters, dim)  # [N, K, D]
    return torch.nn.functional.normalize(subcenters, dim=-1).mean(dim=1)


# ------------------------------------------------------------------ writing
INFERENCE_TEMPLATE = """\
# ############################################################################
# Speaker verification model exported by speechbrain_ext (recipes/export.py).
# Load (offline when <source> is a folder):
#   SpeakerRecognition.from_hparams(source=<this folder or hub repo>)
# Every file below is fetched as <source>/<loadable>.ckpt.
# ############################################################################

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
"""


def inference_yaml(nodes: Mapping[str, object], training_yaml: str) -> str:
    """Text of the model folder's ``hyperparams.yaml``."""
    return INFERENCE_TEMPLATE.format(training_yaml=os.path.basename(training_yaml), nodes=_dump(nodes))


def _subcenter_assignments(classifier_ckpt: Path) -> Optional[torch.Tensor]:
    """``SubCenterAAM.assignments`` ``[N, K]`` saved beside the classifier (``compute_cost.ckpt``), if counted."""
    loss_ckpt = classifier_ckpt.with_name("compute_cost.ckpt")
    if not loss_ckpt.is_file():
        return None
    assignments = torch_patched_state_dict_load(loss_ckpt, "cpu").get("assignments")
    return assignments if assignments is not None and assignments.sum() > 0 else None


def _speaker_classifier(nodes: Dict[str, object], files: Mapping[str, Path]) -> Dict[str, torch.Tensor]:
    """The classifier state with one row per label; sets the node's ``out_neurons`` to match."""
    state = torch_patched_state_dict_load(files["classifier"], "cpu")
    encoder = CategoricalEncoder()
    encoder.load(files["label_encoder"])
    try:
        state["weight"] = speaker_head(state["weight"], len(encoder), _subcenter_assignments(files["classifier"]))
    except (KeyError, ValueError) as err:
        raise ExportError(f"{files['classifier']}: {err} (labels: {files['label_encoder']})") from None
    nodes["classifier"]["out_neurons"] = int(state["weight"].shape[0])
    return state


def loading_snippet(source: str) -> List[str]:
    """Model card lines: load the model from ``source`` (a folder or a hub repo id) and score two files."""
    return ["```python", "from speechbrain.inference.speaker import SpeakerRecognition",
            f'model = SpeakerRecognition.from_hparams(source="{source}")',
            'score, _ = model.verify_files("a.wav", "b.wav")', "```"]


def model_card(results: Optional[Mapping[str, Mapping]], threshold: Optional[Mapping], source: str) -> str:
    """Model card ``README.md`` with hub front matter, the loading snippet and the evaluation table."""
    lines = [
        "---", "license: apache-2.0", "library_name: speechbrain", "pipeline_tag: audio-classification",
        "tags:", "- speechbrain", "- speaker-verification", "- speaker-recognition", "- ECAPA-TDNN",
        "- short-utterance", "---", "", f"# {Path(source).name}: short-utterance speaker verification (ECAPA-TDNN)",
        "", "Exported by speechbrain_ext. Load it (no network access needed for a local folder):", "",
        *loading_snippet(source), "",
    ]
    if threshold is not None:
        measured = threshold.get("test_far")
        lines += [f"Decision threshold: **{threshold['threshold']:.4f}** on {threshold.get('score', 'cosine')} "
                  f"scores, calibrated at {threshold.get('method', '?')} on "
                  f"`{threshold.get('calibration_trials', '?')}`"
                  + (f"; false-accept rate measured on the test trials: {100 * measured:.2f} %" if measured is not None
                     else "") + " (`threshold.json`). `SpeakerRecognition.verify_files` returns cosine scores "
                  "and uses 0.25; `speechbrain_ext.export.load_verifier` applies the calibrated score and threshold.",
                  ""]
    if results:
        lines += ["## Evaluation", "", "| condition | trials | EER (%) | minDCF (p=0.01) | minDCF (p=0.05) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {c} | {r['num_trials']} | {100 * r['eer']:.2f} | {r['min_dcf_0.01']:.4f} | "
                  f"{r['min_dcf_0.05']:.4f} |" for c, r in results.items() if isinstance(r, Mapping) and "eer" in r]
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


def check_threshold(threshold: dict, path: PathLike) -> str:
    """The score kind of a ``threshold.json``, after checking that the CLI can apply it.

    Raises
    ------
    ExportError
        One line naming ``path``: no numeric threshold, an unknown score, or a
        score the access-control CLI does not compute (mean subtraction,
        enrolment by concatenated audio).
    """
    if not isinstance(threshold.get("threshold"), (int, float)):
        raise ExportError(f"{path}: no numeric 'threshold' entry")
    kind = threshold.get("score", "cosine")
    if kind not in SCORE_KINDS:
        raise ExportError(f"{path}: score {kind!r} is not one of {', '.join(SCORE_KINDS)}")
    if threshold.get("subtract_mean"):
        raise ExportError(f"{path}: calibrated on mean-subtracted scores, which the CLI does not compute; "
                          "evaluate with subtract_mean: False")
    if threshold.get("enroll_mode", "average") != "average":
        raise ExportError(f"{path}: calibrated with enroll_mode={threshold['enroll_mode']}, but the CLI enrols "
                          "file by file (average)")
    return kind


# ------------------------------------------------------------------- cohort
def save_cohort(path: PathLike, embeddings: torch.Tensor, top_n: int, model_fingerprint: str) -> None:
    """Write an AS-norm cohort file atomically.

    ``{"embeddings": [C, D] float32, "top_n": int, "fingerprint": str}``, the
    fingerprint (``embeddings.fingerprint``) naming the model whose
    embeddings these are.
    """
    cohort = torch.as_tensor(embeddings, dtype=torch.float32)
    if cohort.dim() != 2 or len(cohort) < 2 or not torch.isfinite(cohort).all():
        raise ValueError(f"cohort must be a finite [C, D] matrix with C >= 2, got shape {tuple(cohort.shape)}")
    if top_n < 2:
        raise ValueError(f"top_n must be >= 2, got {top_n}")
    with atomic_write(path, "wb") as f:
        torch.save({"embeddings": cohort, "top_n": int(top_n), "fingerprint": model_fingerprint}, f)


def read_cohort(path: PathLike, model_fingerprint: str, dim: int) -> Tuple[torch.Tensor, int]:
    """Cohort ``[C, D]`` and ``top_n`` of a cohort file made with this model.

    Raises
    ------
    ExportError
        One line: missing or unreadable file, another dimension, another model.
    """
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        cohort, top_n, made_by = saved["embeddings"], int(saved["top_n"]), saved["fingerprint"]
    except FileNotFoundError:
        raise ExportError(f"{path}: no such cohort file (threshold.json is for asnorm scores)") from None
    except Exception as err:  # noqa: BLE001 -- any unreadable or foreign file: one line
        raise ExportError(f"{path}: not a cohort file ({type(err).__name__}: {err})") from None
    if cohort.dim() != 2 or cohort.shape[1] != dim:
        raise ExportError(f"{path}: cohort embeddings of shape {tuple(cohort.shape)}, the model's have dimension {dim}")
    if made_by != model_fingerprint:
        raise ExportError(f"{path}: made with another model (fingerprint {str(made_by)[:12]}, "
                          f"this model {model_fingerprint[:12]})")
    return cohort, top_n


def write_cohort(model_folder: PathLike, embeddings: torch.Tensor, threshold: float, top_n: int = 100) -> Path:
    """Make an exported model score with AS-norm: ``cohort.pt`` plus an asnorm ``threshold.json``.

    Arguments
    ---------
    model_folder : path
        Exported model folder; its model's fingerprint is recorded in the cohort.
    embeddings : tensor or array
        Cohort speaker voiceprints (``embeddings.speaker_means`` of the
        training manifest), ``[C, D]``, C >= 2.
    threshold : float
        Decision threshold on AS-norm scores (calibrate it on AS-norm
        development scores, ``recipes/evaluate.py`` does); other entries of
        an existing ``threshold.json`` are kept.
    top_n : int
        AS-norm top-N cohort scores per side.

    Returns
    -------
    Path
        The cohort file.
    """
    folder = check_model_folder(model_folder)
    extractor = load_extractor(folder / "hyperparams.yaml", folder)
    path = folder / COHORT_FILE
    save_cohort(path, torch.as_tensor(embeddings), top_n, extractor.fingerprint())
    previous = _read_json(folder / THRESHOLD_FILE, "threshold file") if (folder / THRESHOLD_FILE).is_file() else {}
    with atomic_write(folder / THRESHOLD_FILE) as f:
        json.dump({**previous, "threshold": float(threshold), "score": "asnorm", "cohort_file": COHORT_FILE}, f,
                  indent=2)
    return path


# ------------------------------------------------------------------- export
def export_model(
    hparams_file: Optional[PathLike],
    checkpoint_folder: PathLike,
    output_folder: PathLike,
    threshold_file: Optional[PathLike] = None,
    results_json: Optional[PathLike] = None,
    overrides: Optional[Mapping] = None,
) -> Path:
    """Write the model folder (see module docstring); returns its absolute path.

    ``hparams_file`` ``None`` uses the run's own yaml (:func:`model_hparams_file`).
    With an asnorm ``threshold_file``, the cohort file it names (beside it,
    written by ``recipes/evaluate.py``) is checked to come from these weights
    and shipped as ``cohort.pt``. Every file is written atomically; the
    weights are checked to load strictly into the architecture of
    ``hparams_file`` before anything is written.
    """
    out = Path(output_folder).absolute()
    hparams_file = model_hparams_file(checkpoint_folder) if hparams_file is None else hparams_file
    files = checkpoint_files(checkpoint_folder)
    nodes = read_model_nodes(hparams_file, MODEL_KEYS, overrides)
    _check_sentence_norm(nodes, hparams_file)
    classifier_state = _speaker_classifier(nodes, files)
    modules = build_modules(nodes)
    load_state(modules["embedding_model"], files["embedding_model"], "embedding_model")
    try:
        modules["classifier"].load_state_dict(classifier_state, strict=True)
    except RuntimeError as err:
        raise ExportError(f"{files['classifier']}: does not fit the classifier of the hparams file "
                          f"({str(err).splitlines()[-1].strip()})") from None
    threshold = _read_json(threshold_file, "threshold file")
    cohort_file = None
    if threshold is not None and check_threshold(threshold, threshold_file) == "asnorm":
        cohort_file = Path(threshold_file).parent / threshold.get("cohort_file", COHORT_FILE)
        read_cohort(cohort_file, fingerprint({k: modules[k] for k in EMBEDDING_KEYS}),
                    modules["classifier"].weight.shape[1])
    results = _read_json(results_json, "results")

    atomic_copy(files["embedding_model"], out / "embedding_model.ckpt")
    atomic_copy(files["label_encoder"], out / LABEL_FILE)
    with atomic_write(out / "classifier.ckpt", "wb") as f:
        torch.save(classifier_state, f)
    with atomic_write(out / "hyperparams.yaml") as f:
        f.write(inference_yaml(nodes, str(hparams_file)))
    with atomic_write(out / "config.json") as f:
        json.dump({"speechbrain_interface": "SpeakerRecognition"}, f, indent=2)
    if cohort_file is not None:
        atomic_copy(cohort_file, out / COHORT_FILE)
        threshold["cohort_file"] = COHORT_FILE
    else:
        (out / COHORT_FILE).unlink(missing_ok=True)  # a re-export for cosine scores must not leave one
    if threshold is not None:
        with atomic_write(out / THRESHOLD_FILE) as f:
            json.dump(threshold, f, indent=2)
    with atomic_write(out / "README.md") as f:
        f.write(model_card(results, threshold, out.name))
    return out


# ------------------------------------------------------------------ loading
class CalibratedSpeakerRecognition(SpeakerRecognition):
    """``SpeakerRecognition`` that scores and decides as the model was calibrated.

    ``scoring`` (cosine or AS-norm with the folder's cohort) and
    ``threshold`` come from ``threshold.json``/``cohort.pt`` (set by
    :func:`load_verifier`); ``verify_batch``/``verify_files`` use them unless
    a threshold is passed, and accept ``score >= threshold`` as
    ``speechbrain_ext.metrics`` does (SpeechBrain's own ``verify_batch``
    returns cosine scores and uses ``>`` and 0.25).
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


def load_scoring(folder: Path, modules: Mapping[str, torch.nn.Module]) -> Tuple[Scoring, float]:
    """The scoring and threshold a model folder was calibrated with.

    ``threshold.json`` names the score (``cosine`` when it does not say);
    for ``asnorm``, ``cohort.pt`` must be there and made with the loaded
    ``modules``. Without ``threshold.json``: cosine and SpeechBrain's 0.25,
    with a warning.

    Raises
    ------
    ExportError
        One line: a bad ``threshold.json``, or a missing or mismatched cohort.
    """
    path = folder / THRESHOLD_FILE
    if not path.is_file():
        logger.warning("%s: no threshold.json; using SpeechBrain's default threshold %s", folder, DEFAULT_THRESHOLD)
        return Scoring(), DEFAULT_THRESHOLD
    threshold = _read_json(path, "threshold file")
    if check_threshold(threshold, path) == "cosine":
        return Scoring(), float(threshold["threshold"])
    cohort, top_n = read_cohort(folder / threshold.get("cohort_file", COHORT_FILE),
                                fingerprint({k: modules[k] for k in EMBEDDING_KEYS}),
                                modules["classifier"].weight.shape[1])
    return Scoring("asnorm", cohort, top_n), float(threshold["threshold"])


def load_verifier(folder: PathLike, savedir: Optional[PathLike] = None) -> CalibratedSpeakerRecognition:
    """Load an exported model folder offline, with its calibrated scoring and threshold.

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
        With ``.scoring`` and ``.threshold`` from :func:`load_scoring`.
    """
    from speechbrain.utils.fetching import FetchConfig

    path = check_model_folder(folder)
    savedir = Path(savedir) if savedir is not None else Path(tempfile.mkdtemp(prefix="sbext_model_"))
    model = CalibratedSpeakerRecognition.from_hparams(
        source=str(path), savedir=str(savedir), fetch_config=FetchConfig(allow_network=False, overwrite=True))
    model.scoring, model.threshold = load_scoring(path, model.mods)
    return model


# -------------------------------------------------------------- hub upload
def push_to_hub(folder: PathLike, repo_id: str, token: Optional[str] = None) -> str:
    """Upload a model folder to the Hugging Face hub with ``huggingface_hub.upload_folder``.

    The folder needs no change to load from the hub (see module docstring);
    the uploaded model card's snippet loads ``source=repo_id``.

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
        card = Path(staging, "README.md")
        if card.is_file():
            local, hub = "\n".join(loading_snippet(path.name)), "\n".join(loading_snippet(repo_id))
            card.write_text(card.read_text(encoding="utf-8").replace(local, hub), encoding="utf-8")
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
