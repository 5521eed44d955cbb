"""Every yaml in hparams/ loads; a demo yaml is its full-size yaml plus the values it declares."""
import io
from pathlib import Path

import pytest
import ruamel.yaml
from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.builder import BASE_KEY, ModelError, compose, raw_tree

ROOT = Path(__file__).resolve().parents[1]
HPARAMS = sorted((ROOT / "hparams").glob("*.yaml"))
DEMOS = {"pretrain_demo.yaml": "pretrain_ecapa_cnceleb.yaml", "transfer_demo.yaml": "transfer_shal.yaml"}


def test_every_demo_names_its_full_yaml():
    for demo, full in DEMOS.items():
        assert f"\n{BASE_KEY}: {full}\n" in (ROOT / "hparams" / demo).read_text()


@pytest.mark.parametrize("path", HPARAMS, ids=[p.name for p in HPARAMS])
def test_every_yaml_loads(path):
    tree = raw_tree(path)[0]
    overrides = {key: "/nonexistent" for key, node in tree.items()
                 if getattr(getattr(node, "tag", None), "value", None) == "!PLACEHOLDER"}
    if "out_n_neurons" in tree:
        overrides["out_n_neurons"] = 8  # null in the yaml: counted by recipes/train.py
    hp = load_hyperpyyaml(compose(path, overrides))
    assert set(hp) >= {key for key in tree if not key.startswith("__")}


def _node_texts(name: str, composed: bool) -> dict:
    """Top-level key -> its yaml text, unresolved: the file's own keys, or the composed tree's."""
    yaml = ruamel.yaml.YAML()
    tree = raw_tree(ROOT / "hparams" / name)[0] if composed else yaml.load((ROOT / "hparams" / name).read_text())
    texts = {}
    for key, node in tree.items():
        out = io.StringIO()
        yaml.dump({"x": node}, out)
        texts[key] = "\n".join(line.split("#")[0].rstrip() for line in out.getvalue().splitlines())
    return texts


@pytest.mark.parametrize("demo", sorted(DEMOS))
def test_demo_differs_from_full_only_in_declared_keys(demo):
    declared = set(_node_texts(demo, composed=False)) - {BASE_KEY}
    composed, full = _node_texts(demo, composed=True), _node_texts(DEMOS[demo], composed=False)
    assert set(composed) == set(full)
    assert {key for key in full if composed[key] != full[key]} == declared  # and no declared key is a no-op


def test_a_demo_key_the_base_lacks_is_one_line(tmp_path):
    (tmp_path / "full.yaml").write_text("seed: 1\nlr: 0.1\n")
    (tmp_path / "demo.yaml").write_text("base: full.yaml\nlr: 0.2\nlearning_rate: 0.3\n")
    with pytest.raises(ModelError, match="learning_rate not in its base full.yaml"):
        raw_tree(tmp_path / "demo.yaml")


def test_demo_values_replace_whole_nodes_and_references_follow(tmp_path):
    (tmp_path / "blocks").mkdir()
    (tmp_path / "blocks" / "b.yaml").write_text("x: !PLACEHOLDER\ny: !ref <x>\n")
    (tmp_path / "full.yaml").write_text(
        "seed: 1\nout: !ref run/<seed>\nopts:\n    a: 1\n    b: 2\nblock: !include:blocks/b.yaml\n    x: !ref <seed>\n")
    (tmp_path / "demo.yaml").write_text("base: full.yaml\nopts:\n    a: 3\n")
    hp = load_hyperpyyaml(compose(tmp_path / "demo.yaml", {"seed": 7}))
    assert hp["opts"] == {"a": 3}  # the node is replaced, not merged
    assert hp["out"] == "run/7" and hp["block"]["y"] == 7  # overrides reach the base's references and includes


@pytest.mark.parametrize("full", sorted(DEMOS.values()))
def test_the_shared_blocks_are_included(full):
    text = (ROOT / "hparams" / full).read_text()
    assert "!include:blocks/augmentation.yaml" in text and "!include:blocks/model.yaml" in text


def test_an_override_the_yaml_lacks_is_one_line():
    with pytest.raises(ModelError, match="'lin_neurons' is not one of its keys"):
        compose(ROOT / "hparams" / "transfer_demo.yaml", {"lin_neurons": 256})
