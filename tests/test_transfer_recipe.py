"""TransferBrain: loads the pre-trained backbone and trains the joint loss on the tiny corpus."""
import sys

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.builder import compose

from recipe_utils import ROOT, run, train_command

sys.path.insert(0, str(ROOT / "recipes"))

COMMON = ["--lr_warmup_epochs=0", "--wav_augment=null", "--generate_augment_sources=False",
          "--noise_csv=null", "--rir_csv=null"]


def test_transfer_loads_pretrained_weights_and_trains_the_joint_loss(speaker_corpus, tmp_path):
    import train

    from speechbrain_ext.model_folder import resolve_embedding_checkpoint

    train.main(train_command("pretrain_demo.yaml", speaker_corpus, tmp_path / "pre",
                                   "--number_of_epochs=1", "--out_n_neurons=6", *COMMON)[2:])
    ckpt = resolve_embedding_checkpoint(str(tmp_path / "pre" / "save"))
    pretrained = torch.load(ckpt)
    # one head-only epoch: the backbone must still be exactly the pre-trained one
    argv = train_command("transfer_demo.yaml", speaker_corpus, tmp_path / "tra",
                         f"--pretrained_path={tmp_path / 'pre' / 'save'}", "--number_of_epochs=1",
                         "--head_only_epochs=1", "--topk=2", "--dev_ratio=0",
                         "--long_len=1.0", "--short_scales=[0.5,0.75]", *COMMON)[2:]
    brain = train.main(argv)
    state = brain.modules.embedding_model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pretrained.items())
    # ... and the pre-trained weights are not what the transfer yaml initialises
    hparams_file, _, overrides = sb.parse_arguments(argv)
    fresh = load_hyperpyyaml(compose(hparams_file, train.prepare(hparams_file, overrides)))["embedding_model"]
    fresh = fresh.state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in pretrained.items())
    assert brain.optimizer_step > 0
    log = (tmp_path / "tra" / "train_log.txt").read_text()
    for term in ("train msce_long", "train msce_short", "train kl", "train cosine", "train entropy_short",
                 "train kl_weight", "train step_time_s"):
        assert term in log
    # out_n_neurons left null: the 4 training speakers of train.csv, K = 3 sub-centers each
    assert brain.modules.classifier.weight.shape[0] == 4 * 3


@pytest.fixture(scope="module")
def pretrained(speaker_corpus, tmp_path_factory):
    """A one-epoch pre-trained tiny model: its save folder."""
    import train

    out = tmp_path_factory.mktemp("pre")
    train.main(train_command("pretrain_demo.yaml", speaker_corpus, out, "--number_of_epochs=1",
                             "--out_n_neurons=6", *COMMON)[2:])
    return out / "save"


def transfer(speaker_corpus, out, pretrained, *extra, epochs=2):
    import train

    return train.main(train_command("transfer_demo.yaml", speaker_corpus, out, f"--pretrained_path={pretrained}",
                                    f"--number_of_epochs={epochs}", "--out_n_neurons=4", "--dev_ratio=0",
                                    "--topk=2", "--long_len=1.0", *COMMON, *extra)[2:])


def test_short_crops_reach_the_network_unpadded_at_their_own_length(speaker_corpus, tmp_path, pretrained,
                                                                    monkeypatch):
    from speechbrain_ext.brains.pretrain import PretrainBrain

    seen = []
    original = PretrainBrain.embed_features

    def spy(self, feats, lens, stage):
        if stage == sb.Stage.TRAIN:
            seen.append((feats.shape[1], lens.tolist()))
        return original(self, feats, lens, stage)

    monkeypatch.setattr(PretrainBrain, "embed_features", spy)
    transfer(speaker_corpus, tmp_path, pretrained, "--short_scales=[0.25,0.5]", epochs=1)
    frames = {round(s * 100) + 1 for s in (1.0, 0.25, 0.5)}  # Fbank: 10 ms hop, centred frames
    assert {f for f, _ in seen} <= frames and len({f for f, _ in seen}) == 3  # long + both scales
    assert all(lens == [1.0] * len(lens) for _, lens in seen)  # nothing padded
    assert len(seen) % 2 == 0  # one long and one short forward a step


def test_frozen_teacher_stays_the_pretrained_model(speaker_corpus, tmp_path, pretrained):
    from speechbrain_ext.model_folder import resolve_embedding_checkpoint

    brain = transfer(speaker_corpus, tmp_path, pretrained, "--teacher=frozen")
    weights = torch.load(resolve_embedding_checkpoint(str(pretrained)))
    teacher = brain.teacher.state_dict()
    assert all(torch.equal(teacher[k], v) for k, v in weights.items())
    student = brain.modules.embedding_model.state_dict()
    assert not all(torch.equal(student[k], v) for k, v in weights.items())  # the student did move


def test_ema_teacher_follows_the_momentum_rule_without_gradient(speaker_corpus, tmp_path, pretrained,
                                                                 monkeypatch):
    from speechbrain_ext.brains import transfer as transfer_module

    checks = []
    original = transfer_module.ema_update

    def checked(teacher, student, momentum):
        before = {k: v.clone() for k, v in teacher.state_dict().items()}
        original(teacher, student, momentum)
        name, param = next(iter(teacher.named_parameters()))
        expected = momentum * before[name] + (1 - momentum) * dict(student.named_parameters())[name]
        checks.append(torch.allclose(param, expected) and param.grad is None and not param.requires_grad)

    monkeypatch.setattr(transfer_module, "ema_update", checked)
    brain = transfer(speaker_corpus, tmp_path, pretrained, "--teacher=ema", "--teacher_momentum=0.5")
    assert checks and all(checks) and len(checks) == brain.optimizer_step


def test_frozen_teacher_without_a_pretrained_model_is_one_line(speaker_corpus, tmp_path):
    import train

    cmd = train_command("transfer_demo.yaml", speaker_corpus, tmp_path, "--pretrained_path=null",
                        "--dev_ratio=0", "--teacher=frozen", *COMMON)
    done = run(cmd)
    assert done.returncode != 0 and done.stderr.strip().splitlines()[-1] == (
        "error: teacher: frozen needs pretrained_path (the stage-1 model it freezes)")


def test_subcenters_are_dropped_to_the_dominant_one_and_resume(speaker_corpus, tmp_path, pretrained):
    brain = transfer(speaker_corpus, tmp_path, pretrained, "--subcenter_drop_epoch=1")
    cost = brain.hparams.compute_cost
    assert cost.active.shape == (4, 3) and (cost.active.sum(dim=1) == 1).all()
    assert torch.equal(cost.active.float().argmax(dim=1), cost.assignments.argmax(dim=1))
    # a restarted run restores the mask from the checkpoint instead of re-deciding it
    again = transfer(speaker_corpus, tmp_path, pretrained, "--subcenter_drop_epoch=1")
    assert torch.equal(again.hparams.compute_cost.active, cost.active)


def test_epoch_terms_survive_a_restart_through_the_checkpointer(tmp_path):
    """Mid-epoch sums and the collapse flag's history come back from the checkpoint (they used to restart)."""
    from speechbrain_ext.brains.transfer import EpochTerms
    from speechbrain_ext.checkpoints import AtomicCheckpointer

    terms = EpochTerms()
    terms.add({"msce_long": torch.tensor(2.0), "cosine": 0.5})
    terms.add({"msce_long": 4.0, "cosine": 0.25})
    terms.history = [(0.2, 3.0, 2.0), (0.2, 3.1, 1.8)]
    AtomicCheckpointer(tmp_path, {"epoch_terms": terms}).save_checkpoint(end_of_epoch=False)
    resumed = EpochTerms()
    AtomicCheckpointer(tmp_path, {"epoch_terms": resumed}).recover_if_possible()
    assert resumed.history == terms.history
    assert resumed.take_means() == {"msce_long": 3.0, "cosine": 0.375} and resumed.take_means() == {}
