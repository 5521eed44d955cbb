"""Export to a SpeakerRecognition model folder: offline and moved round trips, the whole SpeechBrain
interface on a sub-center model, the calibrated score (cosine or AS-norm with its cohort), no machine
paths, hub push, ONNX."""
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

from speechbrain_ext.access.cli import EXIT_ERROR
from speechbrain_ext.access.cli import main as cli_main
from speechbrain_ext.builder import compose, EMBEDDING_KEYS, ModelError, read_nodes
from speechbrain_ext.model_folder import load_extractor
from speechbrain_ext.calibration import save_cohort
from speechbrain_ext.export import export_model, files_in, speaker_head
from speechbrain_ext.hub import push_to_hub
from speechbrain_ext.inference import load_verifier
from speechbrain_ext.scoring import as_norm, cosine_scores

ROOT = Path(__file__).resolve().parents[1]
TRAIN_YAML = ROOT / "hparams" / "pretrain_demo.yaml"
# A tiny ECAPA (seconds on 2 CPU cores); the same keys the training tests override.
TINY = {"channels": [16, 16, 16, 16, 48], "attention_channels": 8, "emb_dim": 16, "n_mels": 24}
SPEAKERS = ["spk_a", "spk_b", "spk_c"]


def make_tiny_run(folder: Path, speakers=SPEAKERS, rows_per_speaker: int = 1) -> Path:
    """Save a randomly initialised model from pretrain_demo.yaml as a training run would.

    The run folder gets the run's own ``hyperparams.yaml`` (the yaml with the
    overrides resolved, as SpeechBrain's ``create_experiment_directory``
    writes it), the save folder a checkpoint and ``label_encoder.txt``; the
    classifier has ``rows_per_speaker`` rows per speaker (sub-centers).
    BatchNorm statistics are randomised too (seeded) so that embeddings of
    different signals differ clearly. Returns the save folder.
    """
    overrides = {**TINY, "data_folder": str(folder / "data"), "output_folder": str(folder / "run"),
                 "out_n_neurons": len(speakers) * rows_per_speaker}
    hp = load_hyperpyyaml(compose(TRAIN_YAML, overrides))
    gen = torch.Generator().manual_seed(0)
    for module in hp["embedding_model"].modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=gen) * 0.5)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=gen) + 0.5)
    hp["checkpointer"].save_checkpoint(meta={"ErrorRate": 0.5})
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(speakers)
    encoder.save(Path(hp["save_folder"]) / "label_encoder.txt")
    (folder / "run" / "hyperparams.yaml").write_text(compose(TRAIN_YAML, overrides).getvalue())
    return Path(hp["save_folder"])


def run_script(name: str, argv, capsys):
    """Run ``recipes/<name>.py``'s ``main(argv)`` in process; returns (status, stdout, stderr)."""
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", ROOT / "recipes" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status = module.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def read_wav(path) -> torch.Tensor:
    return torch.from_numpy(sf.read(path, dtype="float32")[0])


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(save folder, model folder, two audio files) of a tiny exported model."""
    tmp = tmp_path_factory.mktemp("export")
    save = make_tiny_run(tmp)
    (tmp / "threshold.json").write_text(json.dumps({"threshold": 0.999, "method": "FAR <= 0.01",
                                                    "score": "cosine"}))
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
    assert set(files_in(folder)) == {"hyperparams.yaml", "embedding_model.ckpt", "classifier.ckpt",
                                           "label_encoder.ckpt", "threshold.json", "config.json", "README.md"}
    assert json.loads((folder / "config.json").read_text()) == {"speechbrain_interface": "SpeakerRecognition"}
    assert json.loads((folder / "threshold.json").read_text())["threshold"] == 0.999
    ecapa = read_nodes(folder / "hyperparams.yaml", EMBEDDING_KEYS)["embedding_model"]
    assert list(ecapa["channels"]) == TINY["channels"] and ecapa["input_size"] == TINY["n_mels"]
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: apache-2.0\nlibrary_name: speechbrain\n")
    assert "- speaker-verification" in card and "| full | 10 | 12.34 | 0.5000 | 0.4000 |" in card
    assert 'SpeakerRecognition.from_hparams(source="model")' in card


def test_no_path_of_the_exporting_machine(exported):
    """Neither the folder's location, nor the run's, nor the repository's is written in any file."""
    save, folder, _ = exported
    for name in files_in(folder):
        content = (folder / name).read_bytes()
        for path in (folder, save, ROOT):
            assert str(path).encode() not in content, f"{name} names {path}"
    assert "pretrained_path" not in (folder / "hyperparams.yaml").read_text()


def test_moved_folder_loads_offline_without_overrides(exported, offline, tmp_path):
    from speechbrain.inference.speaker import SpeakerRecognition

    save, folder, wavs = exported
    moved = shutil.copytree(folder, tmp_path / "somewhere" / "else")
    model = SpeakerRecognition.from_hparams(source=str(moved), savedir=str(tmp_path / "sr"))
    assert (tmp_path / "sr" / "embedding_model.ckpt").resolve() == moved / "embedding_model.ckpt"
    wav = read_wav(wavs[1]).unsqueeze(0)
    with torch.no_grad():
        exported_emb = model.encode_batch(wav).squeeze(1)
    reference = load_extractor(TRAIN_YAML, save, overrides=TINY).forward(wav)
    assert torch.allclose(exported_emb, reference, atol=1e-5)


def test_verify_files_uses_calibrated_threshold(exported, offline):
    _, folder, (a, b) = exported
    verifier = load_verifier(folder)
    assert verifier.calibration.threshold == 0.999 and verifier.scoring.kind == "cosine"
    same, same_decision = verifier.verify_files(str(a), str(a))
    other, other_decision = verifier.verify_files(str(a), str(b))
    assert same.item() == pytest.approx(1.0, abs=1e-5) and bool(same_decision)
    assert other.item() < same.item() - 1e-3
    assert bool(other_decision) == (other.item() >= 0.999)


# ------------------------------------------------------------- sub-center head
def test_speaker_head_layout():
    """Rows j*K .. j*K+K-1 are speaker j's sub-centers (SubCenterAAM's class-major layout)."""
    weight = torch.randn(4 * 3, 5)
    head = speaker_head(weight, 4)
    assert head.shape == (4, 5)
    unit = weight / weight.norm(dim=1, keepdim=True)
    assert torch.allclose(head[2], unit[6:9].mean(dim=0))
    assert speaker_head(weight, 12) is weight
    with pytest.raises(ValueError, match="12 classifier rows are not K per speaker for 5 speakers"):
        speaker_head(weight, 5)


@pytest.fixture(scope="module")
def subcenter_model(tmp_path_factory, speaker_corpus):
    """An exported K=3 sub-center model of the 6 corpus speakers and its sub-center weight ``[18, D]``.

    Sub-center k of speaker j is the (tiny model's) embedding of its training
    utterance k (utt0-2), so the K-row head classifies by the nearest training
    utterance, as a trained sub-center head would by the nearest mode.
    """
    tmp = tmp_path_factory.mktemp("subcenter")
    speakers = [f"spk{s}" for s in range(6)]
    save = make_tiny_run(tmp, speakers, rows_per_speaker=3)
    extractor = load_extractor(None, save)  # the run's own hyperparams.yaml
    files = [speaker_corpus / spk / f"utt{u}.wav" for spk in speakers for u in range(3)]
    weight = extractor.embed_signals([read_wav(f) for f in files])  # [18, D], speaker-major
    ckpt = next(save.glob("CKPT+*"))
    torch.save({"weight": weight}, ckpt / "classifier.ckpt")
    return export_model(None, save, tmp / "model"), weight, speakers


def test_subcenter_model_works_with_the_whole_speechbrain_interface(subcenter_model, speaker_corpus, offline,
                                                                    tmp_path):
    """classify_file decodes a label (it crashed with KeyError on K*N rows), encode_batch and verify_files run,
    and the one-row-per-speaker head identifies held-out utterances of the training speakers about as well
    as the K-row head (measured: 13/18 and 14/18; chance is 3/18)."""
    from speechbrain.inference.classifiers import EncoderClassifier

    folder, weight, speakers = subcenter_model
    assert torch.load(folder / "classifier.ckpt")["weight"].shape == (6, weight.shape[1])
    model = EncoderClassifier.from_hparams(source=str(folder), savedir=str(tmp_path / "ec"))
    agree, correct, correct_k = 0, 0, 0
    for spk in speakers:
        for u in (3, 4, 5):
            path = speaker_corpus / spk / f"utt{u}.wav"
            _, _, index, label = model.classify_file(str(path))
            emb = model.encode_batch(read_wav(path).unsqueeze(0)).reshape(1, -1)  # [1, D]
            cos = torch.nn.functional.cosine_similarity(emb, weight)  # [18]
            by_subcenter = speakers[int(cos.reshape(6, 3).max(dim=1).values.argmax())]
            agree += label[0] == by_subcenter
            correct += label[0] == spk
            correct_k += by_subcenter == spk
    print(f"held-out utterances: one-row head {correct}/18 correct, K-row head {correct_k}/18, agree {agree}/18")
    assert correct >= max(correct_k - 1, 9)
    score, decision = load_verifier(folder).verify_files(str(speaker_corpus / "spk0" / "utt3.wav"),
                                                         str(speaker_corpus / "spk0" / "utt4.wav"))
    assert score.shape == (1,) and decision.dtype == torch.bool  # as SpeechBrain's verify_files


def test_subcenters_dropped_in_training_export_the_dominant_one(subcenter_model, tmp_path):
    """With the sub-center assignment counts training saved (compute_cost.ckpt), each speaker keeps
    the sub-center most of its samples went to, the one drop_subcenters kept."""
    folder, weight, speakers = subcenter_model
    save = tmp_path / "save"
    shutil.copytree(next(Path(folder).parent.glob("run/save")), save)
    dominant = torch.tensor([2, 0, 1, 1, 0, 2])
    assignments = torch.nn.functional.one_hot(dominant, 3) * 7 + 1  # [6, 3]
    torch.save({"assignments": assignments, "active": torch.zeros(0, 3, dtype=torch.bool)},
               next(save.glob("CKPT+*")) / "compute_cost.ckpt")
    shutil.copy(Path(folder).parent / "run" / "hyperparams.yaml", tmp_path / "hyperparams.yaml")
    head = torch.load(export_model(None, save, tmp_path / "model") / "classifier.ckpt")["weight"]
    assert torch.equal(head, weight[torch.arange(6) * 3 + dominant])


# ------------------------------------------------------- the calibrated score
@pytest.fixture(scope="module")
def asnorm_model(exported, tmp_path_factory):
    """The tiny model exported with an asnorm threshold.json and the cohort evaluation wrote beside it."""
    save, _, _ = exported
    tmp = tmp_path_factory.mktemp("asnorm")
    extractor = load_extractor(TRAIN_YAML, save, overrides=TINY)
    cohort = torch.randn(8, TINY["emb_dim"], generator=torch.Generator().manual_seed(0))
    save_cohort(tmp / "cohort.pt", cohort, 4, extractor.fingerprint())
    (tmp / "threshold.json").write_text(json.dumps({"threshold": 1.5, "score": "asnorm", "cohort_file": "cohort.pt",
                                                    "method": "FAR <= 0.01", "target_far": 0.01,
                                                    "test_far": 0.02}))
    folder = export_model(TRAIN_YAML, save, tmp / "model", tmp / "threshold.json", overrides=TINY)
    return folder, cohort, tmp


def test_asnorm_export_ships_the_cohort_and_verify_applies_it(asnorm_model, exported, offline):
    folder, cohort, _ = asnorm_model
    _, _, (a, b) = exported
    assert torch.equal(torch.load(folder / "cohort.pt")["embeddings"], cohort)
    assert json.loads((folder / "threshold.json").read_text())["score"] == "asnorm"
    assert "1.5000** on asnorm scores" in (folder / "README.md").read_text()
    model = load_verifier(folder)
    assert model.scoring.kind == "asnorm" and model.scoring.top_n == 4 and model.calibration.threshold == 1.5
    score, decision = model.verify_files(str(a), str(b))
    emb_a, emb_b = (model.encode_batch(read_wav(p).unsqueeze(0)).reshape(-1) for p in (a, b))
    trial, enroll, test = [("a", "b")], {"a": emb_a}, {"b": emb_b}
    expected = as_norm(cosine_scores(trial, enroll, test), trial, enroll, test, cohort, top_n=4)[0]
    assert score.item() == pytest.approx(expected, abs=1e-5) and bool(decision) == (expected >= 1.5)
    assert abs(expected - cosine_scores(trial, enroll, test)[0]) > 1e-3  # AS-norm changed the score


def one_line_cli_error(capsys, folder, tmp_path, wav):
    """``speechbrain-ext verify`` with this model folder: (status, stderr)."""
    status = cli_main(["verify", "--model", str(folder), "--db", str(tmp_path / "vp.db"), "anyone", str(wav)])
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return status, err


def test_cohort_that_does_not_match_the_model(asnorm_model, exported, tmp_path, capsys):
    folder, cohort, _ = asnorm_model
    _, _, (a, _) = exported
    broken = shutil.copytree(folder, tmp_path / "wrong_dim")
    save_cohort(broken / "cohort.pt", cohort[:, :8], 4, torch.load(folder / "cohort.pt")["fingerprint"])
    status, err = one_line_cli_error(capsys, broken, tmp_path, a)
    assert status == EXIT_ERROR and "cohort embeddings of shape (8, 8), the model's have dimension 16" in err
    other = shutil.copytree(folder, tmp_path / "other_model")
    save_cohort(other / "cohort.pt", cohort, 4, "0" * 64)
    status, err = one_line_cli_error(capsys, other, tmp_path, a)
    assert status == EXIT_ERROR and "cohort.pt: made with another model (fingerprint 000000000000" in err


def test_asnorm_threshold_without_cohort(asnorm_model, exported, tmp_path, capsys):
    folder, _, eval_folder = asnorm_model
    save, _, (a, _) = exported
    missing = shutil.copytree(folder, tmp_path / "no_cohort")
    (missing / "cohort.pt").unlink()
    status, err = one_line_cli_error(capsys, missing, tmp_path, a)
    assert status == EXIT_ERROR and "no such cohort file (threshold.json is for asnorm scores)" in err
    (tmp_path / "threshold.json").write_text((eval_folder / "threshold.json").read_text())
    with pytest.raises(ModelError, match="no such cohort file"):  # export refuses too, before writing
        export_model(TRAIN_YAML, save, tmp_path / "m", tmp_path / "threshold.json", overrides=TINY)
    assert not (tmp_path / "m").exists()


@pytest.mark.parametrize("entries, message", [
    ({"score": "plda"}, "score 'plda' is not one of cosine, asnorm"),
    ({"subtract_mean": True}, "calibrated on mean-subtracted scores"),
    ({"enroll_mode": "concat"}, "calibrated with enroll_mode=concat"),
    ({"threshold": None}, "no numeric 'threshold' entry"),
])
def test_threshold_files_the_cli_cannot_apply(exported, tmp_path, entries, message):
    save, _, _ = exported
    (tmp_path / "threshold.json").write_text(json.dumps({"threshold": 0.5, "score": "cosine", **entries}))
    with pytest.raises(ModelError, match=message):
        export_model(TRAIN_YAML, save, tmp_path / "m", tmp_path / "threshold.json", overrides=TINY)


def test_eval_cohort_of_another_model_is_refused(exported, asnorm_model, tmp_path):
    save, _, _ = exported
    _, cohort, eval_folder = asnorm_model
    shutil.copy(eval_folder / "threshold.json", tmp_path / "threshold.json")
    save_cohort(tmp_path / "cohort.pt", cohort, 4, "f" * 64)
    with pytest.raises(ModelError, match="cohort.pt: made with another model"):
        export_model(TRAIN_YAML, save, tmp_path / "m", tmp_path / "threshold.json", overrides=TINY)


# --------------------------------------------------------------- bad inputs
def test_bad_model_folders(exported, tmp_path):
    _, folder, _ = exported
    with pytest.raises(FileNotFoundError, match="no such folder"):
        load_verifier(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    (broken / "classifier.ckpt").unlink()
    with pytest.raises(FileNotFoundError, match="missing classifier.ckpt"):
        load_verifier(broken)


def test_export_cli(exported, tmp_path, capsys):
    """No training yaml and no overrides: the run's own hyperparams.yaml; one-line errors otherwise."""
    save, folder, _ = exported
    status, out, err = run_script("export", ["--checkpoint_folder", save, "--output_folder", tmp_path / "m",
                                             "--onnx"], capsys)
    assert status == 0, err
    assert "embedding_model.onnx: max |onnxruntime - PyTorch|" in out
    def architecture(path):
        return [line for line in path.read_text().splitlines() if not line.startswith("# ---- Features")]

    assert architecture(tmp_path / "m" / "hyperparams.yaml") == architecture(folder / "hyperparams.yaml")
    argv = ["--checkpoint_folder", tmp_path / "nowhere", "--output_folder", tmp_path / "m2"]
    status, _, err = run_script("export", argv, capsys)
    assert status == 1 and err.count("\n") == 1 and "nowhere: no hyperparams.yaml" in err
    argv = ["--hparams_file", TRAIN_YAML, "--checkpoint_folder", save, "--output_folder", tmp_path / "m2"]
    status, _, err = run_script("export", argv, capsys)  # the training yaml without the run's overrides
    assert status == 1 and err.count("\n") == 1 and "does not fit the embedding_model" in err
    assert not (tmp_path / "m2").exists()


# ----------------------------------------------------------------- the hub
def test_push_to_hub_card_loads_as_printed(exported, monkeypatch, tmp_path):
    """The uploaded card's snippet, run as printed, loads the model from the (simulated) hub repo."""
    _, folder, (a, _) = exported
    hub = tmp_path / "hub"
    calls = {}

    def fake_upload(**kwargs):
        calls.update(kwargs)
        shutil.copytree(kwargs["folder_path"], hub)
        return "https://hub.example/commit/1"

    def fake_download(repo_id, filename, **kwargs):
        assert repo_id == "me/tiny-ecapa", repo_id
        if not (hub / filename).is_file():
            raise FileNotFoundError(filename)
        return str(hub / filename)

    monkeypatch.setattr("huggingface_hub.create_repo", lambda repo_id, **kw: repo_id)
    monkeypatch.setattr("huggingface_hub.upload_folder", fake_upload)
    assert push_to_hub(folder, "me/tiny-ecapa") == "https://hub.example/commit/1"
    assert calls["repo_id"] == "me/tiny-ecapa" and calls["repo_type"] == "model"
    assert set(files_in(hub)) == set(files_in(folder))
    card = (hub / "README.md").read_text()
    snippet = card.split("```python\n")[1].split("```")[0]
    assert 'from_hparams(source="me/tiny-ecapa")' in snippet and "overrides" not in snippet
    assert 'source="model"' in (folder / "README.md").read_text()  # local copy untouched

    monkeypatch.setattr("speechbrain.utils.fetching.huggingface_hub.hf_hub_download", fake_download)
    monkeypatch.chdir(tmp_path)  # a user's working folder, without the model
    shutil.copy(a, tmp_path / "a.wav")
    shutil.copy(a, tmp_path / "b.wav")
    namespace = {}
    exec(snippet, namespace)  # noqa: S102 -- the card's own code, as a user would paste it
    assert float(namespace["score"]) == pytest.approx(1.0, abs=1e-5)

    def no_network(**kwargs):
        raise ConnectionError("Failed to resolve 'huggingface.co'\nmore detail")

    monkeypatch.setattr("huggingface_hub.upload_folder", no_network)
    with pytest.raises(ModelError, match=r"^push to hub me/tiny-ecapa failed: ConnectionError: Failed to resolve"):
        push_to_hub(folder, "me/tiny-ecapa")


def test_onnx_parity(exported, tmp_path):
    from speechbrain_ext.onnx_export import export_onnx, onnx_parity

    save, _, _ = exported
    modules = dict(load_extractor(TRAIN_YAML, save, overrides=TINY).modules)
    export_onnx(modules, tmp_path / "emb.onnx")
    assert onnx_parity(tmp_path / "emb.onnx", modules, seconds=(0.5, 1.3, 3.1)) < 1e-4
