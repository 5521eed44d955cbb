"""Stage 1 from SpeechBrain's published VoxCeleb ECAPA-TDNN (the ``spkrec-ecapa-voxceleb`` folder).

The folder is built here in exactly the published layout (``hyperparams.yaml``,
``embedding_model.ckpt``, ``mean_var_norm_emb.ckpt``, ``classifier.ckpt``,
``label_encoder.txt``; 7205 VoxCeleb speakers), with random weights: nothing
is downloaded. Each file is written by SpeechBrain's own save hook for its
object, as SpeechBrain's recipe wrote the published one.
"""
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.checkpoints import DEFAULT_SAVE_HOOKS, get_default_hook

from speechbrain_ext.brains import TransferBrain
from speechbrain_ext.model_folder import load_extractor

ROOT = Path(__file__).resolve().parents[1]
VOXCELEB_SPEAKERS = 7205  # VoxCeleb1 dev + VoxCeleb2 dev

# The inference yaml of speechbrain/spkrec-ecapa-voxceleb (its structure and arguments).
VOXCELEB_YAML = """\
# ############################################################################
# Model: ECAPA big for Speaker verification
# ############################################################################

# Feature parameters
n_mels: 80

# Pretrain folder (HuggingFace)
pretrained_path: speechbrain/spkrec-ecapa-voxceleb

# Output parameters
out_n_neurons: 7205

# Model params
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>

mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False

embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [1024, 1024, 1024, 1024, 3072]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 128
    lin_neurons: 192

classifier: !new:speechbrain.lobes.models.ECAPA_TDNN.Classifier
    input_size: 192
    out_neurons: !ref <out_n_neurons>

mean_var_norm_emb: !new:speechbrain.processing.features.InputNormalization
    norm_type: global
    std_norm: False

modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
    mean_var_norm_emb: !ref <mean_var_norm_emb>
    classifier: !ref <classifier>

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
        mean_var_norm_emb: !ref <mean_var_norm_emb>
        classifier: !ref <classifier>
        label_encoder: !ref <label_encoder>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
        mean_var_norm_emb: !ref <pretrained_path>/mean_var_norm_emb.ckpt
        classifier: !ref <pretrained_path>/classifier.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""


@pytest.fixture(scope="module")
def voxceleb_folder(tmp_path_factory) -> Path:
    """A local ``spkrec-ecapa-voxceleb`` folder with random (seeded) weights."""
    folder = tmp_path_factory.mktemp("spkrec-ecapa-voxceleb")
    (folder / "hyperparams.yaml").write_text(VOXCELEB_YAML)
    torch.manual_seed(0)
    hp = load_hyperpyyaml(VOXCELEB_YAML)
    hp["mean_var_norm_emb"](torch.randn(4, 1, 192), torch.ones(4))  # global statistics, as after training
    hp["label_encoder"].update_from_iterable(f"id{10001 + i}" for i in range(VOXCELEB_SPEAKERS))
    for name, path in (("embedding_model", "embedding_model.ckpt"), ("mean_var_norm_emb", "mean_var_norm_emb.ckpt"),
                       ("classifier", "classifier.ckpt"), ("label_encoder", "label_encoder.txt")):
        get_default_hook(hp[name], DEFAULT_SAVE_HOOKS)(hp[name], folder / path)
    return folder


def test_voxceleb_ecapa_is_stage_one_of_transfer_shal(voxceleb_folder, tmp_path):
    """--pretrained_path=<spkrec-ecapa-voxceleb> loads every weight into transfer_shal.yaml's C=1024 ECAPA."""
    overrides = {"data_folder": str(tmp_path / "data"), "output_folder": str(tmp_path / "run"),
                 "pretrained_path": str(voxceleb_folder), "out_n_neurons": 10}
    with open(ROOT / "hparams" / "transfer_shal.yaml", encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, overrides)
    assert list(hp["embedding_model"].blocks[0].conv.conv.weight.shape)[:1] == [1024]
    brain = TransferBrain(modules=hp["modules"], opt_class=hp["opt_class"], hparams=hp,
                          run_opts={"device": "cpu"}, checkpointer=hp["checkpointer"])
    brain.on_fit_start()  # what fit() does first: load pretrained_path, then resume (nothing to resume here)
    published = torch.load(voxceleb_folder / "embedding_model.ckpt")
    loaded = brain.modules.embedding_model.state_dict()
    assert loaded.keys() == published.keys()
    assert all(torch.equal(loaded[k], v) for k, v in published.items())


def test_voxceleb_folder_evaluates_as_is(voxceleb_folder):
    """recipes/evaluate.py's extractor reads the folder's own yaml (no --model_hparams): the baseline row."""
    extractor = load_extractor(None, voxceleb_folder)
    published = torch.load(voxceleb_folder / "embedding_model.ckpt")
    loaded = extractor.modules["embedding_model"].state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in published.items())
    assert extractor.embed_signals([0.1 * torch.randn(16000)]).shape == (1, 192)
