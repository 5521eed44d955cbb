"""Packaging a trained model as a folder SpeechBrain's ``SpeakerRecognition`` loads offline.

Model folder written by :func:`export_model`::

    hyperparams.yaml      inference yaml: Fbank, sentence InputNormalization, ECAPA and Classifier copied
                          from the training yaml, CategoricalEncoder and a Pretrainer
    embedding_model.ckpt  classifier.ckpt (one row per speaker)  label_encoder.ckpt
    threshold.json        the calibrated decision from recipes/evaluate.py (speechbrain_ext.calibration):
                          the score it is for (cosine or asnorm), llr map, threshold, target and test FAR
    cohort.pt             AS-norm cohort (only when threshold.json is for asnorm)
    config.json           {"speechbrain_interface": "SpeakerRecognition"}
    README.md             model card with hub front matter and metrics
    digits/               digit recogniser (only with ``digits_model``, :func:`export_digits`), for
                          ``EncoderASR.from_hparams(source=<model>/digits)``: hyperparams.yaml, encoder.ckpt,
                          tokenizer.ckpt (the SentencePiece model)

No path of the exporting machine is written anywhere (SpeechBrain issues #1253/#2699: a ``pretrained_path``
naming a folder or hub id sends ``from_hparams`` to that place, not to the folder it was given). The
Pretrainer lists its loadables without ``paths``, so SpeechBrain fetches each as ``<source>/<loadable>.ckpt``
from whatever ``source`` ``from_hparams`` was given: the folder where it lies now, or a hub repo id after
``hub.push_to_hub``, with no ``overrides``. Hence ``label_encoder.ckpt`` (a ``CategoricalEncoder`` text file
under the name the Pretrainer looks for).

The architecture is copied from the training yaml (by default the run's own ``hyperparams.yaml``).
"""
import os
import shutil
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder
from speechbrain.utils.checkpoints import torch_patched_state_dict_load

from speechbrain_ext.builder import MODEL_KEYS, ModelError, build_modules, dump_nodes, load_state, read_nodes
from speechbrain_ext.brains.digits import tokenizer_file
from speechbrain_ext.calibration import read_json, read_threshold, save_cohort, set_asnorm_threshold, write_threshold
from speechbrain_ext.io_utils import PathLike, atomic_copy, atomic_write, write_json
from speechbrain_ext.digits import DIGITS_FOLDER
from speechbrain_ext.losses.subcenter_aam import dominant_subcenters
from speechbrain_ext.manifest import SAMPLE_RATE
from speechbrain_ext.model_folder import (COHORT_FILE, LABEL_FILE, THRESHOLD_FILE, best_checkpoint, check_model_folder,
                                          checkpoint_files, load_extractor, model_hparams_file)


def speaker_head(weight: torch.Tensor, num_speakers: int, assignments: Optional[torch.Tensor] = None) -> torch.Tensor:
    """One classifier row per speaker from a cosine classifier with K rows per speaker.

    ``SubCenterAAM`` trains K sub-centers per speaker, class-major (row ``j*K + k`` is sub-center k of speaker
    j), and scores a speaker by its best sub-center. SpeechBrain's ``EncoderClassifier.classify_file`` decodes
    the argmax row with the label encoder, so it needs one row per label. Each speaker keeps its dominant
    sub-center when training counted sub-center assignments (``SubCenterAAM.assignments`` ``[N, K]``, the
    sub-centers ``drop_subcenters`` keeps: ``losses.subcenter_aam.dominant_subcenters``); without counts it
    gets the mean of its normalised sub-centers::

        w[j] = (1/K) * sum_k W[j*K + k] / |W[j*K + k]|      W: [N*K, D] -> [N, D]

    With K = 1 the weight is returned unchanged; rows not a multiple of ``num_speakers`` raise ``ValueError``.

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


INFERENCE_TEMPLATE = """\
# ############################################################################
# Speaker verification model exported by speechbrain_ext (recipes/export.py).
# Load (offline when <source> is a folder):
#   SpeakerRecognition.from_hparams(source=<this folder or hub repo>)
# Every file below is fetched as <source>/<loadable>.ckpt.
# ############################################################################

sample_rate: {sample_rate}

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


def _subcenter_assignments(classifier_ckpt: Path) -> Optional[torch.Tensor]:
    """``SubCenterAAM.assignments`` ``[N, K]`` saved beside the classifier (``compute_cost.ckpt``), if counted."""
    loss_ckpt = classifier_ckpt.with_name("compute_cost.ckpt")
    if not loss_ckpt.is_file():
        return None
    assignments = torch_patched_state_dict_load(loss_ckpt, "cpu").get("assignments")
    return assignments if assignments is not None and assignments.sum() > 0 else None


def loading_snippet(source: str) -> List[str]:
    """Model card lines: load the model from ``source`` (a folder or a hub repo id) and score two files."""
    return ["```python", "from speechbrain.inference.speaker import SpeakerRecognition",
            f'model = SpeakerRecognition.from_hparams(source="{source}")',
            'score, _ = model.verify_files("a.wav", "b.wav")', "```"]


def digit_card_lines(digits: Mapping[str, Mapping]) -> List[str]:
    """Model card lines of the digit recogniser: DER and string accuracy by condition, with their 95 % CIs."""
    def pct(r: Mapping, key: str) -> str:
        ci = r.get(f"{key}_ci")
        return f"{100 * r[key]:.2f}" + (f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]" if ci else "")

    lines = ["## Digit recogniser (`digits/`)", "",
             "`EncoderASR.from_hparams(source=\"<model>/digits\").transcribe_file(\"claim.wav\")` returns the digits "
             "said; the prompted door (`speechbrain-ext challenge`) checks them.", "",
             "| condition | utterances | digit error rate (%) [95% CI] | string accuracy (%) [95% CI] |",
             "|---|---:|---:|---:|"]
    lines += [f"| {c} | {r['num_utterances']} | {pct(r, 'der')} | {pct(r, 'string_accuracy')} |"
              for c, r in digits.items()]
    return lines + [""]


def model_card(results: Optional[Mapping[str, Mapping]], threshold: Optional[Mapping], source: str) -> str:
    """Model card ``README.md`` with hub front matter, the loading snippet and the evaluation table."""
    lines = ["---", "license: apache-2.0", "library_name: speechbrain", "pipeline_tag: audio-classification", "tags:",
             "- speechbrain", "- speaker-verification", "- speaker-recognition", "- ECAPA-TDNN", "- short-utterance",
             "---", "", f"# {Path(source).name}: short-utterance speaker verification (ECAPA-TDNN)", "",
             "Exported by speechbrain_ext. Load it (no network access needed for a local folder):", "",
             *loading_snippet(source), ""]
    if threshold is not None:
        measured = threshold.get("test_far")
        lines += [f"Decision threshold: **{threshold['threshold']:.4f}** on {threshold.get('score', 'cosine')} "
                  f"scores, calibrated at {threshold.get('method', '?')} on "
                  f"`{threshold.get('calibration_trials', '?')}`"
                  + (f"; false-accept rate measured on the test trials: {100 * measured:.2f} %" if measured is not None
                     else "") + " (`threshold.json`). `SpeakerRecognition.verify_files` returns cosine scores "
                  "and uses 0.25; `speechbrain_ext.inference.load_verifier` applies the calibrated score and "
                  "threshold.", ""]
        cal = threshold.get("calibration")
        if cal and cal.get("mode") == "llr":
            lines += [f"Deployed decision: llr >= **{cal['llr_threshold']:.3f}** (p_target {cal['p_target']:g}, "
                      f"c_miss {cal['c_miss']:g}, c_fa {cal['c_fa']:g}), llr = {cal['map']['a']:.3f} s + "
                      f"{cal['map']['b']:.3f} + {cal['map']['c']:.3f} log(test seconds).", ""]
    if results:
        lines += ["## Evaluation", "", "| condition | trials | EER (%) | minDCF (p=0.01) | minDCF (p=0.05) |",
                  "|---|---:|---:|---:|---:|"]
        lines += [f"| {c} | {r['num_trials']} | {100 * r['eer']:.2f} | {r['min_dcf_0.01']:.4f} | "
                  f"{r['min_dcf_0.05']:.4f} |" for c, r in results.items() if isinstance(r, Mapping) and "eer" in r]
        lines.append("")
    if results and results.get("digits"):
        lines += digit_card_lines(results["digits"])
    return "\n".join(lines)


def write_cohort(model_folder: PathLike, embeddings: torch.Tensor, threshold: float, top_n: int = 100) -> Path:
    """Make an exported model score with AS-norm: write ``cohort.pt`` and an asnorm ``threshold.json``.

    ``embeddings``: cohort voiceprints ``[C, D]``, C >= 2 (``embeddings.speaker_means`` of the training
    manifest), recorded with the folder's model fingerprint. ``threshold`` is on AS-norm scores (calibrate it
    on AS-norm development scores, as ``recipes/evaluate.py`` does), applied in far mode
    (``calibration.set_asnorm_threshold``). Returns the cohort file.
    """
    folder = check_model_folder(model_folder)
    extractor = load_extractor(folder / "hyperparams.yaml", folder)
    path = folder / COHORT_FILE
    save_cohort(path, torch.as_tensor(embeddings), top_n, extractor.fingerprint())
    set_asnorm_threshold(folder, threshold)
    return path


def checked_model(hparams_file: PathLike, files: Mapping[str, Path], overrides: Optional[Mapping] = None
                  ) -> Tuple[Dict[str, object], Dict[str, torch.Tensor], Dict[str, torch.nn.Module]]:
    """``(nodes, classifier_state, modules)``: the run's model as it will be exported, its weights loaded strictly.

    ``nodes`` are the yaml nodes of ``MODEL_KEYS``, the classifier's ``out_neurons`` set to one row per
    speaker as in ``classifier_state`` (:func:`speaker_head`); ``modules`` are built from them with the run's
    weights. Export and ONNX assume sentence mean normalisation (no stored statistics).
    """
    nodes = read_nodes(hparams_file, MODEL_KEYS, overrides)
    if nodes["mean_var_norm"].get("norm_type") != "sentence":
        raise ModelError(f"{hparams_file}: mean_var_norm must be InputNormalization with norm_type: sentence")
    state = torch_patched_state_dict_load(files["classifier"], "cpu")
    encoder = CategoricalEncoder()
    encoder.load(files["label_encoder"])
    try:
        state["weight"] = speaker_head(state["weight"], len(encoder), _subcenter_assignments(files["classifier"]))
    except (KeyError, ValueError) as err:
        raise ModelError(f"{files['classifier']}: {err} (labels: {files['label_encoder']})") from None
    nodes["classifier"]["out_neurons"] = int(state["weight"].shape[0])
    modules = build_modules(nodes)
    load_state(modules["embedding_model"], files["embedding_model"], "embedding_model")
    load_state(modules["classifier"], files["classifier"], "classifier", state)
    return nodes, state, modules


DIGITS_TEMPLATE = """\
# ############################################################################
# Digit recogniser exported by speechbrain_ext (recipes/export.py --digits_model).
# Load (offline when <source> is a folder):
#   EncoderASR.from_hparams(source=<this folder>).transcribe_file("claim.wav")
#   speechbrain_ext.digits.load_recognizer(<the model folder holding this one>)
# Every file below is fetched as <source>/<loadable>.ckpt.
# ############################################################################

sample_rate: {sample_rate}

# ---- Features, encoder and CTC head (copied from {training_yaml}) ----------
{nodes}
tokenizer: !new:sentencepiece.SentencePieceProcessor

encoder: !new:speechbrain.nnet.containers.LengthsCapableSequential
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    enc: !ref <enc>
    ctc_lin: !ref <ctc_lin>
    log_softmax: !ref <log_softmax>

modules:
    encoder: !ref <encoder>

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        encoder: !ref <encoder>
        tokenizer: !ref <tokenizer>
"""
DIGIT_KEYS = ("compute_features", "mean_var_norm", "enc", "ctc_lin", "log_softmax", "decoding_function")


def export_digits(checkpoint_folder: PathLike, output_folder: PathLike, overrides: Optional[Mapping] = None) -> Path:
    """Write a digit recogniser folder that ``EncoderASR.from_hparams(source=output_folder)`` loads offline.

    ``checkpoint_folder``: the training save folder of ``hparams/digits_ctc*.yaml`` (its best checkpoint, lowest
    validation DER); the architecture is its run's ``hyperparams.yaml``. ``encoder.ckpt`` holds the state of the
    ``encoder`` of :data:`DIGITS_TEMPLATE` (features, encoder, CTC head), checked to load strictly;
    ``tokenizer.ckpt`` is the SentencePiece model the run trained. Returns the folder's absolute path.
    """
    save = Path(checkpoint_folder)
    hparams_file = model_hparams_file(save)
    checkpoint = best_checkpoint(save)
    if checkpoint is None or not {"enc", "ctc_lin"} <= set(checkpoint.paramfiles):
        raise ModelError(f"{save}: no committed checkpoint of a digit recogniser (enc, ctc_lin) in it")
    nodes = read_nodes(hparams_file, DIGIT_KEYS, overrides)
    sizes = read_nodes(hparams_file, ("output_neurons", "tokenizer_folder"), overrides)
    candidates = [tokenizer_file(folder, sizes["output_neurons"])
                  for folder in (sizes["tokenizer_folder"], save / "tokenizer", save.parent / "tokenizer")]
    tokenizer = next((path for path in candidates if path.is_file()), None)
    if tokenizer is None:
        raise ModelError(f"{save}: no tokenizer model ({candidates[1].name}) in {sizes['tokenizer_folder']} "
                         f"or {save / 'tokenizer'}")
    text = DIGITS_TEMPLATE.format(sample_rate=SAMPLE_RATE, training_yaml=os.path.basename(hparams_file),
                                  nodes=dump_nodes(nodes))
    built = load_hyperpyyaml(text)
    load_state(built["enc"], checkpoint.paramfiles["enc"], "enc")
    load_state(built["ctc_lin"], checkpoint.paramfiles["ctc_lin"], "ctc_lin")
    out = Path(output_folder).absolute()
    with atomic_write(out / "encoder.ckpt", "wb") as f:
        torch.save(built["encoder"].state_dict(), f)
    atomic_copy(tokenizer, out / "tokenizer.ckpt")
    with atomic_write(out / "hyperparams.yaml") as f:
        f.write(text)
    return out


def export_model(hparams_file: Optional[PathLike], checkpoint_folder: PathLike, output_folder: PathLike,
                 threshold_file: Optional[PathLike] = None, results_json: Optional[PathLike] = None,
                 overrides: Optional[Mapping] = None, digits_model: Optional[PathLike] = None) -> Path:
    """Write the model folder (see module docstring); returns its absolute path.

    ``digits_model``: the save folder of a digit recogniser run, exported into ``digits/``
    (:func:`export_digits`); without it no ``digits/`` is left in the folder.

    ``hparams_file`` ``None`` uses the run's own yaml (``builder.model_hparams_file``). With an asnorm
    ``threshold_file``, the cohort file it names (beside it, written by ``recipes/evaluate.py``) is checked to
    come from these weights and shipped as ``cohort.pt``. Every file is written atomically, after the weights
    are checked to load strictly into the architecture of ``hparams_file``.
    """
    out = Path(output_folder).absolute()
    hparams_file = model_hparams_file(checkpoint_folder) if hparams_file is None else hparams_file
    files = checkpoint_files(checkpoint_folder)
    nodes, classifier_state, modules = checked_model(hparams_file, files, overrides)
    threshold, cohort_file = None, None
    if threshold_file is not None:  # ModelError: a cohort or llr map missing, or made with other weights
        threshold, _, cohort_file = read_threshold(threshold_file, modules)
    results = read_json(results_json, "results")
    if digits_model is not None:
        export_digits(digits_model, out / DIGITS_FOLDER)
    elif (out / DIGITS_FOLDER).is_dir():  # a re-export without a recogniser must not ship an old one
        shutil.rmtree(out / DIGITS_FOLDER)

    atomic_copy(files["embedding_model"], out / "embedding_model.ckpt")
    atomic_copy(files["label_encoder"], out / LABEL_FILE)
    with atomic_write(out / "classifier.ckpt", "wb") as f:
        torch.save(classifier_state, f)
    with atomic_write(out / "hyperparams.yaml") as f:
        f.write(INFERENCE_TEMPLATE.format(training_yaml=os.path.basename(hparams_file), nodes=dump_nodes(nodes),
                                          sample_rate=SAMPLE_RATE))
    write_json(out / "config.json", {"speechbrain_interface": "SpeakerRecognition"})
    if cohort_file is not None:
        atomic_copy(cohort_file, out / COHORT_FILE)
        threshold["cohort_file"] = COHORT_FILE
    else:
        (out / COHORT_FILE).unlink(missing_ok=True)  # a re-export for cosine scores must not leave one
    if threshold is not None:
        write_threshold(out / THRESHOLD_FILE, threshold)
    with atomic_write(out / "README.md") as f:
        f.write(model_card(results, threshold, out.name))
    return out


def files_in(folder: PathLike) -> List[str]:
    """Sorted file names of a folder (for messages and tests)."""
    return sorted(p.name for p in Path(folder).iterdir() if p.is_file())
