"""Export to a SpeakerRecognition model folder: offline round trip, threshold, hub push, ONNX."""
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.encoder import CategoricalEncoder

from speechbrain_ext import export
from speechbrain_ext.export import ExportError, export_model, load_extractor, load_verifier, push_to_hub

ROOT = Path(__file__).resolve().parents[1]
TRAIN_YAML = ROOT / "hparams" / "pretrain_demo.yaml"
# A tiny ECAPA (seconds on 2 CPU cores); the same keys the training tests override.
TINY = {"channels": [16, 16, 16, 16, 48], "attention_channels": 8, "emb_dim": 16, "n_mels": 24}
SPEAKERS = ["spk_a", "spk_b", "spk_c"]


def make_tiny_run(folder: Path) -> Path:
    """Save a randomly initialised model from pretrain_demo.yaml with its Checkpointer.

    BatchNorm statistics are randomised too (seeded) so that embeddings of
    different signals differ clearly. Returns the save folder.
    """
    overrides = {**TINY, "data_folder": str(folder / "data"), "output_folder": str(folder / "run"),
                 "out_n_neurons": len(SPEAKERS)}
    with open(TRAIN_YAML, encoding="utf-8") as f:
        hp = load_hyperpyyaml(f, overrides)
    gen = torch.Generator().manual_seed(0)
    for module in hp["embedding_model"].modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    hp["checkpointer"].save_checkpoint(meta={"ErrorRate": 0.5})
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(SPEAKERS)
    encoder.save(Path(hp["save_folder"]) / "label_encoder.txt")
    return Path(hp["save_folder"])


def run_script(name: str, argv, capsys):
    """Run ``recipes/<name>.py``'s ``main(argv)`` in process; returns (status, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(save folder, model folder, two audio files) of a tiny exported model."""
    tmp = tmp_path_factory.mktemp("export")
    save = make_tiny_run(tmp)
    (tmp / "threshold.json").write_text(json.dumps({"threshold": 0.999, "method": "FAR <= 0.01"}))
    (tmp / "results.json").write_text(json.dumps(
        {"full": {"eer": 0.1234, "min_dcf_0.01": 0.5, "min_dcf_0.05": 0.4, "num_trials": 10}}))
    folder = export_model(TRAIN_YAML, save, tmp / "model", tmp / "threshold.json", tmp / "results.json",
                          overrides=TINY)
    rng = np.random.default_rng(1)
    wavs = []
    for name, seconds in (("a.wav", 1.0), ("b.wav", 1.4)):
        sf.write(tmp / name, (0.1 * rng.standard_normal(int(seconds * 16000))).astype("float32"), 16000)
        wavs.append(tmp / name)
    return save, folder, wavs


@pytest.fixture
def offline(monkeypatch):
    """No hub access: HF_HUB_OFFLINE=1 and any hub download fails loudly."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(**kwargs):
        raise AssertionError(f"network access attempted: {kwargs}")

    monkeypatch.setattr("speechbrain.utils.fetching.huggingface_hub.hf_hub_download", refuse)


def test_model_folder_contents(exported):
    _, folder, _ = exported
    assert set(export.files_in(folder)) == {"hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt",
                                           "label_encoder.txt", "threshold.json", "config.json", "README.md"}
    assert json.loads((folder / "config.json").read_text()) == {"speechbrain_interface": "SpeakerRecognition"}
    assert json.loads((folder / "threshold.json").read_text())["threshold"] == 0.999
    yaml_text = (folder / "hyperparams.yaml").read_text()
    assert f'pretrained_path: "{folder}"' in yaml_text  # a local folder, not a hub id
    ecapa = export.read_model_nodes(folder / "hyperparams.yaml")["embedding_model"]
    assert list(ecapa["channels"]) == TINY["channels"] and ecapa["input_size"] == TINY["n_mels"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: speechbrain\n")
    assert "- speaker-verification" in card and "| full | 10 | 12.34 | 0.5000 | 0.4000 |" in card


def test_offline_round_trip_equals_checkpoint(exported, offline, tmp_path):
    from speechbrain.inference.classifiers import EncoderClassifier
    from speechbrain.inference.speaker import SpeakerRecognition

    save, folder, wavs = exported
    model = SpeakerRecognition.from_hparams(source=str(folder), savedir=str(tmp_path / "sr"))
    wav = torch.from_numpy(sf.read(wavs[1], dtype="float32")[0]).unsqueeze(0)
    with torch.no_grad():
        exported_emb = model.encode_batch(wav).squeeze(1)
    reference = load_extractor(TRAIN_YAML, save, overrides=TINY).forward(wav)
    assert torch.allclose(exported_emb, reference, atol=1e-5)
    classifier = EncoderClassifier.from_hparams(source=str(folder), savedir=str(tmp_path / "ec"))
    assert classifier.classify_file(str(wavs[0]))[3][0] in SPEAKERS


def test_verify_files_uses_calibrated_threshold(exported, offline):
    _, folder, (a, b) = exported
    verifier = load_verifier(folder)
    assert verifier.threshold == 0.999
    same, same_decision = verifier.verify_files(str(a), str(a))
    other, other_decision = verifier.verify_files(str(a), str(b))
    assert same.item() == pytest.approx(1.0, abs=1e-5) and bool(same_decision)
    assert other.item() < same.item() - 1e-3
    assert bool(other_decision) == (other.item() >= 0.999)


def test_bad_model_folders(exported, tmp_path):
    _, folder, _ = exported
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_verifier(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "classifier.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match="missing classifier.ckpt"):
        load_verifier(broken)


def test_export_cli_errors(exported, tmp_path, capsys):
    save, _, _ = exported
    argv = ["--hparams_file", TRAIN_YAML, "--checkpoint_folder", tmp_path / "nowhere", "--output_folder", tmp_path / "m"]
    status, _, err = run_script("export", argv, capsys)
    assert status == 1 and err.count("\n") == 1 and "no such folder" in err
    argv = ["--hparams_file", TRAIN_YAML, "--checkpoint_folder", save, "--output_folder", tmp_path / "m"]
    status, _, err = run_script("export", argv, capsys)  # architecture overrides forgotten
    assert status == 1 and err.count("\n") == 1 and "does not fit the embedding_model" in err
    assert not (tmp_path / "m").exists()


def test_push_to_hub(exported, monkeypatch):
    _, folder, _ = exported
    calls = {}

    def fake_upload(**kwargs):
        calls.update(kwargs, files=export.files_in(kwargs["folder_path"]),
                      yaml=(Path(kwargs["folder_path"]) / "hyperparams.yaml").read_text())
        return "https://hub.example/commit/1"

    monkeypatch.setattr("huggingface_hub.create_repo", lambda repo_id, **kw: repo_id)
    monkeypatch.setattr("huggingface_hub.upload_folder", fake_upload)
    assert push_to_hub(folder, "me/tiny-ecapa") == "https://hub.example/commit/1"
    assert calls["repo_id"] == "me/tiny-ecapa" and calls["repo_type"] == "model"
    assert "threshold.json" in calls["files"] and 'pretrained_path: "me/tiny-ecapa"' in calls["yaml"]
    assert f'pretrained_path: "{folder}"' in (folder / "hyperparams.yaml").read_text()  # local copy untouched

    def no_network(**kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")

    monkeypatch.setattr("huggingface_hub.upload_folder", no_network)
    with pytest.raises(ExportError, match=r"^push to hub me/tiny-ecapa failed: ConnectionError: Failed to resolve"):
        push_to_hub(folder, "me/tiny-ecapa")


def test_onnx_parity(exported, tmp_path):
    from speechbrain_ext.onnx_export import export_onnx, onnx_parity

    save, _, _ = exported
    modules = dict(load_extractor(TRAIN_YAML, save, overrides=TINY).modules)
    export_onnx(modules, tmp_path / "emb.onnx")
    assert onnx_parity(tmp_path / "emb.onnx", modules, seconds=(0.5, 1.3, 3.1)) < 1e-4
