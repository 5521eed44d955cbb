"""TransferBrain: loads the pre-trained backbone and trains the joint loss on the tiny corpus."""
import sys

import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml

from recipe_utils import ROOT, train_command

sys.path.insert(0, str(ROOT / "recipes"))

COMMON = ["--lr_warmup_epochs=0", "--wav_augment=null", "--generate_augment_sources=False",
          "--noise_csv=null", "--rir_csv=null"]


def test_transfer_loads_pretrained_weights_and_trains_the_joint_loss(speaker_corpus, tmp_path):
    import train

    from speechbrain_ext.pretrained import resolve_embedding_checkpoint

    train.main(train_command("pretrain_demo.yaml", speaker_corpus, tmp_path / "pre",
                                   "--number_of_epochs=1", "--out_n_neurons=6", *COMMON)[2:])
    ckpt = resolve_embedding_checkpoint(str(tmp_path / "pre" / "save"))
    pretrained = torch.load(ckpt)
    # one head-only epoch: the backbone must still be exactly the pre-trained one
    argv = train_command("transfer_demo.yaml", speaker_corpus, tmp_path / "tra",
                         f"--pretrained_path={tmp_path / 'pre' / 'save'}", "--number_of_epochs=1",
                         "--head_only_epochs=1", "--out_n_neurons=4", "--topk=2", "--dev_ratio=0",
                         "--long_len=1.0", "--short_scales=[0.5,0.75]", *COMMON)[2:]
    brain = train.main(argv)
    state = brain.modules.embedding_model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pretrained.items())
    # ... and the pre-trained weights are not what the transfer yaml initialises
    hparams_file, _, overrides = sb.parse_arguments(argv)
    with open(hparams_file) as f:
        fresh = load_hyperpyyaml(f, overrides)["embedding_model"].state_dict()
    assert not all(torch.equal(fresh[k], v) for k, v in pretrained.items())
    assert brain.optimizer_step > 0
    log = (tmp_path / "tra" / "train_log.txt").read_text()
    for term in ("train msce_long", "train msce_short", "train kl", "train cosine", "train entropy_short",
                 "train kl_weight", "train step_time_s"):
        assert term in log
    # the classifier is sized to K sub-centers per target speaker
    assert brain.modules.classifier.weight.shape[0] == 4 * 3
