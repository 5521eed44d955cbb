"""Pre-training recipe: feature masking, preheating, resume, non-finite loss (DDP: test_ddp.py)."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.builder import compose

from recipe_utils import ROOT, run, train_command

sys.path.insert(0, str(ROOT / "recipes"))


def load_yaml(name: str, **overrides):
    """The whole yaml loaded, without data: ``out_n_neurons`` (null: counted by the recipe) given."""
    return load_hyperpyyaml(compose(ROOT / "hparams" / name, {"data_folder": "/nonexistent", "out_n_neurons": 8,
                                                              **overrides}))


def epoch_lines(log: Path):
    """(epoch, lr, margin) of each line of a train_log.txt."""
    pattern = re.compile(r"epoch: (\d+), lr: ([0-9.e+-]+), margin: ([0-9.e+-]+)")
    return [tuple(float(x) for x in m.groups()) for m in map(pattern.search, log.read_text().splitlines()) if m]


def test_feature_masking_zeroes_whole_frames_and_bins_only():
    feat_augment = load_yaml("pretrain_demo.yaml")["feat_augment"]
    feat_augment.augment_prob = 1.0
    torch.manual_seed(0)
    feats = torch.rand(8, 200, 80) + 1.0  # no zero anywhere before masking
    out, _ = feat_augment(feats.clone(), torch.ones(8))
    for x, y in zip(feats, out):
        zero = y == 0
        frames = zero.all(dim=1)   # [200] frames zeroed across every bin
        bins = zero.all(dim=0)     # [80] bins zeroed across every frame
        assert int(frames.sum()) in range(1, 11) and int(bins.sum()) in range(1, 9)
        # every zero lies in a masked frame or bin, everything else is untouched
        assert torch.equal(zero, frames[:, None] | bins[None, :])
        assert torch.equal(y[~zero], x[~zero])


def test_demo_and_full_configs_load_with_consistent_keys():
    for name in ("pretrain_demo.yaml", "pretrain_ecapa_cnceleb.yaml"):
        hp = load_yaml(name)
        assert hp["n_mels"] == 80 and hp["embedding_model"].blocks[0].conv.in_channels == 80
        assert hp["lr_schedule"](0.0) == 0.0  # LR warm-up starts from 0
        assert hp["margin_schedule"](0.0) == 0.0 and hp["margin_schedule"](1e3) == hp["margin"]
    full = load_yaml("pretrain_ecapa_cnceleb.yaml")
    assert sum(p.numel() for p in full["embedding_model"].parameters()) > 5e6


def train_and_fresh(argv):
    """Train through the recipe; also build the untrained modules the same seed gives."""
    import speechbrain as sb
    import train

    brain = train.main(argv)
    hparams_file, _, overrides = sb.parse_arguments(argv)
    fresh = load_hyperpyyaml(compose(hparams_file, train.prepare(hparams_file, overrides)))
    return brain, fresh


def same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb_ = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb_[k]) for k in sa)


@pytest.mark.parametrize("head_only_epochs", [1, 0])
def test_head_only_warmup_freezes_backbone_and_trains_head(speaker_corpus, tmp_path, head_only_epochs):
    argv = train_command("pretrain_demo.yaml", speaker_corpus, tmp_path, "--number_of_epochs=1",
                         f"--head_only_epochs={head_only_epochs}", "--lr_warmup_epochs=0",
                         "--generate_augment_sources=False", "--wav_augment=null",
                         "--noise_csv=null", "--rir_csv=null")[2:]
    brain, fresh = train_and_fresh(argv)
    # out_n_neurons left null: one classifier row per speaker of train.csv, and so in the run's own yaml
    assert brain.modules.classifier.weight.shape[0] == 6
    assert re.search(r"^out_n_neurons: 6 ", (tmp_path / "hyperparams.yaml").read_text(), re.MULTILINE)
    assert brain.optimizer_step > 0
    assert not same_state(brain.modules.classifier, fresh["classifier"])
    # BatchNorm statistics included: a frozen backbone is left exactly as initialised
    assert same_state(brain.modules.embedding_model, fresh["embedding_model"]) == bool(head_only_epochs)


def test_explicit_out_n_neurons_that_disagrees_with_train_csv_is_one_line_error(speaker_corpus, tmp_path):
    import train
    from speechbrain_ext.brains import ConfigError

    argv = train_command("pretrain_demo.yaml", speaker_corpus, tmp_path, "--out_n_neurons=5", "--wav_augment=null",
                         "--generate_augment_sources=False", "--noise_csv=null", "--rir_csv=null")[2:]
    # recipes/train.py prints a ConfigError as one line "error: ..." (no traceback)
    with pytest.raises(ConfigError, match=r"^out_n_neurons=5 but .*train.csv has 6 speakers \(x1 speeds\): "
                                          r"set --out_n_neurons=6$"):
        train.main(argv)
    assert not list(tmp_path.glob("save/CKPT+*"))


def test_non_finite_loss_stops_with_batch_named_and_no_checkpoint(speaker_corpus, tmp_path, monkeypatch):
    from speechbrain_ext.brains import NonFiniteLossError
    from speechbrain_ext.losses import SubCenterAAM

    monkeypatch.setattr(SubCenterAAM, "forward", lambda self, cos, spk: cos.sum() * float("nan"))
    argv = train_command("pretrain_demo.yaml", speaker_corpus, tmp_path, "--number_of_epochs=1",
                         "--out_n_neurons=6", "--wav_augment=null", "--generate_augment_sources=False", "--lr_warmup_epochs=0",
                         "--noise_csv=null", "--rir_csv=null")[2:]
    with pytest.raises(NonFiniteLossError, match=r"epoch 1, step 1, batch \[spk"):
        train_and_fresh(argv)
    assert not list((tmp_path / "save").glob("CKPT+*"))


def test_killed_run_resumes_without_repeating_epochs(speaker_corpus, tmp_path):
    common = ["--number_of_epochs=3", "--out_n_neurons=6", "--ckpt_interval_steps=2"]
    reference = run(train_command("pretrain_demo.yaml", speaker_corpus, tmp_path / "ref", *common))
    assert reference.returncode == 0, reference.stderr[-2000:]

    out = tmp_path / "killed"
    cmd = train_command("pretrain_demo.yaml", speaker_corpus, out, *common)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = out / "train_log.txt"
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and "epoch: 1," in log.read_text():
            break  # epoch 1 is done: kill inside epoch 2
        time.sleep(0.02)
    assert proc.poll() is None, "run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert "epoch: 3," not in log.read_text()

    resumed = run(cmd)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "Loading a checkpoint" in resumed.stdout + resumed.stderr
    assert "Going into epoch 1" not in resumed.stdout + resumed.stderr
    epochs = epoch_lines(log)
    assert [e for e, _, _ in epochs] == [1, 2, 3]  # no epoch logged twice
    # LR and margin schedules continue exactly as in the uninterrupted run
    assert epochs == epoch_lines(tmp_path / "ref" / "train_log.txt")


def test_speed_perturbation_as_new_speakers_offsets_labels_and_folds_back():
    from types import SimpleNamespace

    from speechbrain.augment.time_domain import SpeedPerturb

    from speechbrain_ext.brains import PretrainBrain
    from speechbrain_ext.losses import SubCenterAAM

    brain = PretrainBrain.__new__(PretrainBrain)  # only the label logic, no modules needed
    brain.hparams = SimpleNamespace(speed_perturb=SpeedPerturb(16000, [90, 100, 110]),
                                    speed_as_speaker=True, wav_augment=None,
                                    compute_cost=SubCenterAAM(), out_n_neurons=15)  # 5 speakers x 3 speeds
    wavs, lens, spk = torch.randn(3, 16000), torch.ones(3), torch.tensor([[0], [3], [4]])
    seen = set()
    torch.manual_seed(0)
    for _ in range(12):
        out, _, labels = brain.augment_waveforms(wavs, lens, spk)
        # the Brain reads the speed from the lengths; SpeechBrain's own record of its draw must agree
        speed = brain.hparams.speed_perturb.speeds[int(brain.hparams.speed_perturb.samp_index)]
        block = {100: 0, 90: 1, 110: 2}[speed]
        assert torch.equal(labels, spk + 5 * block)
        assert abs(out.shape[1] - 16000 * 100 / speed) < 200
        seen.add(speed)
    assert seen == {90, 100, 110}
    # validation scores of the 15 (speaker, speed) classes fold back onto the 5 speakers
    cos = torch.full((1, 1, 15), -0.5)
    cos[0, 0, 2 * 5 + 3] = 0.9  # speaker 3 at speed 110
    assert brain.class_scores(cos).argmax().item() == 3


def test_applied_speed_needs_exactly_one_fitting_speed():
    from speechbrain_ext.brains.pretrain import applied_speed

    with pytest.raises(ValueError, match="turned 16000 samples into 17600: none of the speeds"):
        applied_speed([90, 100, 110], 16000, 17600)  # a resampling by s / 100 instead of 100 / s
    with pytest.raises(ValueError, match="several of the speeds"):
        applied_speed([99, 100], 20, 20)  # too short to tell 99 % from 100 %


def test_speechbrain_wraps_ddp_in_the_private_hook_pretrain_brain_overrides(monkeypatch):
    """PretrainBrain overrides SpeechBrain's private ``_wrap_distributed`` (no public switch turns off its
    BatchNorm -> SyncBatchNorm conversion, which fails on CPU): on_fit_start must still call the hook, and
    the hook must still convert. If either changes, this fails and the override is to be revisited."""
    import speechbrain as sb

    class Spy(sb.Brain):
        def _wrap_distributed(self):
            self.wrapped = True

    brain = Spy(modules={"norm": torch.nn.BatchNorm1d(4)}, opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
                run_opts={"device": "cpu"})
    brain.on_fit_start()
    assert brain.wrapped
    monkeypatch.setattr("speechbrain.core.DDP", lambda module, **kwargs: module)
    brain.distributed_launch, brain.distributed_backend = True, "gloo"
    sb.Brain._wrap_distributed(brain)
    assert isinstance(brain.modules["norm"], torch.nn.SyncBatchNorm)


def test_backbone_lr_scale_gives_the_backbone_its_own_scaled_optimiser(speaker_corpus, tmp_path):
    argv = train_command("pretrain_demo.yaml", speaker_corpus, tmp_path, "--number_of_epochs=1",
                         "--out_n_neurons=6", "--lr_warmup_epochs=0", "--backbone_lr_scale=0.1",
                         "--wav_augment=null", "--generate_augment_sources=False",
                         "--noise_csv=null", "--rir_csv=null")[2:]
    brain, fresh = train_and_fresh(argv)
    head_lr = brain.optimizer.param_groups[0]["lr"]
    backbone_lr = brain.backbone_optimizer.param_groups[0]["lr"]
    assert head_lr > 0 and backbone_lr == pytest.approx(0.1 * head_lr)
    backbone_ids = {id(p) for p in brain.modules.embedding_model.parameters()}
    assert {id(p) for p in brain.backbone_optimizer.param_groups[0]["params"]} == backbone_ids
    assert not backbone_ids & {id(p) for p in brain.optimizer.param_groups[0]["params"]}
    assert not same_state(brain.modules.embedding_model, fresh["embedding_model"])
