"""Every yaml in hparams/ loads; the demo and full configs differ only in the keys they declare."""
from pathlib import Path

import pytest
import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml

ROOT = Path(__file__).resolve().parents[1]

# what a demo yaml may set differently from its full-size yaml: sizes, budget, paths, corpus
DIFFER = {
    ("pretrain_demo.yaml", "pretrain_ecapa_cnceleb.yaml"): {
        "output_folder", "prepare_data", "cnceleb2_folder", "number_of_epochs", "batch_size",
        "ckpt_interval_minutes", "train_dataloader_options", "channels", "attention_channels", "lr", "final_lr",
        "lr_warmup_epochs", "margin_schedule", "speed_perturb", "speed_as_speaker"},
    ("transfer_demo.yaml", "transfer_shal.yaml"): {
        "output_folder", "prepare_data", "test_ratio", "number_of_epochs", "batch_size", "ckpt_interval_minutes",
        "train_dataloader_options", "channels", "attention_channels", "final_lr", "lr_warmup_epochs",
        "backbone_lr_scale", "margin_ramp_start", "margin_ramp_end", "head_only_epochs"},
}


def raw_nodes(name: str) -> dict:
    """Top-level key -> its yaml text (tags and references unresolved, comments dropped)."""
    yaml = ruamel.yaml.YAML(typ="rt")
    tree = yaml.load((ROOT / "hparams" / name).read_text())

    def text(node) -> str:
        import io

        out = io.StringIO()
        yaml.dump({"x": node}, out)
        return "\n".join(line.split("#")[0].rstrip() for line in out.getvalue().splitlines())
    return {key: text(value) for key, value in tree.items()}


@pytest.mark.parametrize("name", sorted(p.name for p in (ROOT / "hparams").glob("*.yaml")))
def test_every_yaml_loads(name):
    nodes = raw_nodes(name)
    overrides = {key: "/nonexistent" for key, text in nodes.items() if "!PLACEHOLDER" in text}
    if "out_n_neurons" in nodes:
        overrides["out_n_neurons"] = 8  # null in the yaml: counted by recipes/train.py
    with open(ROOT / "hparams" / name) as f:
        hp = load_hyperpyyaml(f, overrides)
    assert set(hp) >= set(nodes) - {key for key in nodes if key.startswith("__")}


@pytest.mark.parametrize("pair", sorted(DIFFER))
def test_demo_and_full_differ_only_in_declared_keys(pair):
    demo, full = (raw_nodes(name) for name in pair)
    differing = (set(demo) ^ set(full)) | {key for key in set(demo) & set(full) if demo[key] != full[key]}
    assert differing <= DIFFER[pair], f"undeclared differences: {sorted(differing - DIFFER[pair])}"


def test_the_augmentation_block_is_shared():
    for name in ("pretrain_demo.yaml", "pretrain_ecapa_cnceleb.yaml", "transfer_demo.yaml", "transfer_shal.yaml"):
        assert "!include:blocks/augmentation.yaml" in (ROOT / "hparams" / name).read_text()
