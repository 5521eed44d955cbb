"""Reading hparams yamls: composed from a base (:func:`compose`), in part (:func:`read_nodes`), built into modules.

A demo yaml is its full-size yaml plus the values that differ (``base:``,
:func:`raw_tree`). A training yaml instantiates everything at load time, so
here its references are resolved and only the nodes asked for are copied and
instantiated (:func:`build_modules`): evaluation and export get the training
run's ``compute_features``/``mean_var_norm``/``embedding_model`` (and
``classifier``) with its arguments and load the trained weights into them
(:func:`load_state`; ``model_folder.load_extractor``); the training recipe runs
``prepare_data`` before the model is built. Where a model folder keeps its yaml
and weights is ``speechbrain_ext.model_folder``'s business.
"""
import io
from pathlib import Path
from typing import Dict, Mapping, Optional, Sequence, Tuple, Union

import ruamel.yaml
import torch
from hyperpyyaml import load_hyperpyyaml, resolve_references
from speechbrain.utils.checkpoints import torch_patched_state_dict_load

from speechbrain_ext.io_utils import PathLike

EMBEDDING_KEYS = ("compute_features", "mean_var_norm", "embedding_model")
MODEL_KEYS = EMBEDDING_KEYS + ("classifier",)
UNUSED = "unused"  # value of the !PLACEHOLDER keys (data paths) when only the model is read
BASE_KEY = "base"  # a yaml with ``base: <file>`` is that file plus its own keys

Overrides = Union[Mapping, str, None]  # a mapping or yaml text, as hyperpyyaml takes them


class ModelError(ValueError):
    """A problem with a model's yaml, weights or folder; the message is one line."""


def _yaml() -> ruamel.yaml.YAML:
    """Round-trip ruamel loader/dumper (keeps ``!new:`` tags and comments)."""
    y = ruamel.yaml.YAML()
    y.width = 120
    return y


def raw_tree(hparams_file: PathLike) -> Tuple[dict, Path]:
    """A yaml's top-level nodes, unresolved, and the file its ``!include:`` paths are relative to.

    A file with ``base: <yaml>`` (a path relative to the file) is composed: the base file's tree with each of
    this file's keys put in its place, so a demo yaml lists only what differs from the full-size one.
    HyperPyYAML has no such merge (its ``!include:`` nests a file under a key), hence this. A key the base does
    not have is a :class:`ModelError` (a typo would otherwise be silently ignored).
    """
    path = Path(hparams_file)
    if not path.is_file():
        raise ModelError(f"{hparams_file}: no such hparams file")
    tree = _yaml().load(path.read_text(encoding="utf-8"))
    if not isinstance(tree, dict) or BASE_KEY not in tree:
        return tree, path
    full, origin = raw_tree(path.parent / tree.pop(BASE_KEY))
    unknown = [key for key in tree if key not in full]
    if unknown:
        raise ModelError(f"{hparams_file}: {', '.join(unknown)} not in its base {origin.name}")
    full.update(tree)
    return full, origin


def compose(hparams_file: PathLike, overrides: Overrides = None) -> io.StringIO:
    """The yaml text of ``hparams_file`` (its ``base`` merged, :func:`raw_tree`) with ``overrides``
    applied and references and includes resolved, as ``load_hyperpyyaml`` would; load it with that."""
    tree, origin = raw_tree(hparams_file)
    stream = io.StringIO()
    _yaml().dump(tree, stream)
    stream.seek(0)
    stream.name = str(origin)  # resolve_references finds !include: files beside this name
    try:
        return resolve_references(stream, overrides, overrides_must_match=True)
    except KeyError as err:  # hyperpyyaml's "Override 'x' not found in: [every key]"
        raise ModelError(f"{hparams_file}: {str(err.args[0]).split(' not found')[0]} is not one of its keys") from None


def read_nodes(hparams_file: PathLike, keys: Sequence[str], overrides: Overrides = None,
               fill_placeholders: bool = True) -> Dict[str, object]:
    """The yaml nodes of ``keys`` (references resolved, :func:`compose`), not instantiated.

    ``fill_placeholders`` sets the ``!PLACEHOLDER`` keys not in ``overrides`` (a mapping then) to ``"unused"``:
    data paths, when only the model is read. A missing file or key is a :class:`ModelError`.
    """
    if fill_placeholders:
        placeholders = {k: UNUSED for k, v in raw_tree(hparams_file)[0].items()
                        if getattr(getattr(v, "tag", None), "value", None) == "!PLACEHOLDER"}
        overrides = {**placeholders, **(overrides or {})}
    tree = _yaml().load(compose(hparams_file, overrides))
    missing = [k for k in keys if k not in tree]
    if missing:
        raise ModelError(f"{hparams_file}: no {', '.join(missing)} key(s)")
    return {k: tree[k] for k in keys}


def dump_nodes(nodes: Mapping[str, object]) -> str:
    """Yaml text of ``nodes`` (tags and inline comments kept, whole-line comments dropped)."""
    stream = io.StringIO()
    _yaml().dump(dict(nodes), stream)
    lines = stream.getvalue().splitlines()
    return "\n".join(line for line in lines if line.strip() and not line.lstrip().startswith("#")) + "\n"


def build_modules(nodes: Mapping[str, object]) -> Dict[str, object]:
    """Instantiate yaml nodes from :func:`read_nodes` (modules get fresh weights)."""
    return load_hyperpyyaml(dump_nodes(nodes))


def load_state(module: torch.nn.Module, path: PathLike, name: str,
               state: Optional[Mapping[str, torch.Tensor]] = None) -> None:
    """Load a SpeechBrain ``.ckpt`` state dict strictly, with a one-line error on mismatch.

    Read with SpeechBrain's own loader (``torch_patched_state_dict_load``, which renames keys of older
    SpeechBrain versions, e.g. in the published VoxCeleb ECAPA), but loaded strictly: SpeechBrain's parameter
    transfer only warns about missing keys, which would hide a wrong architecture. ``state``, when given, is the
    (edited) content of ``path`` to load instead.
    """
    state = torch_patched_state_dict_load(path, "cpu") if state is None else state
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as err:
        lines = str(err).splitlines()
        first = lines[1].strip() if len(lines) > 1 else str(err)
        raise ModelError(f"{path}: does not fit the {name} of the hparams file ({first})") from None
