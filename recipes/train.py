#!/usr/bin/env python3
"""Train a model: speaker pre-training, transfer or the digit recogniser, chosen by the yaml.

Usage::

    python recipes/train.py hparams/pretrain_demo.yaml [--overrides]
    python recipes/train.py hparams/transfer_demo.yaml --pretrained_path=results/.../save
    python recipes/train.py hparams/digits_ctc_demo.yaml --data_folder=DIR
    torchrun --standalone --nproc_per_node=4 recipes/train.py hparams/pretrain_ecapa_cnceleb.yaml

The yaml names the Brain (``brain_class``, whose ``datasets`` classmethod builds
its datasets), the data preparation (``prepare_data``, skipped with ``--skip_prep=True``) and everything else; any
key can be overridden on the command line (``--number_of_epochs=2``), and
SpeechBrain's run options apply (``--device``, ``--precision``...). A killed
run resumes from its last checkpoint when restarted with the same command.
"""
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_ext.augment import prepare_generated_noise, prepare_simulated_rirs
from speechbrain_ext.brains import ConfigError
from speechbrain_ext.brains.pretrain import classes_per_speaker
from speechbrain_ext.builder import ModelError, build_modules, compose, raw_tree, read_nodes
from speechbrain_ext.io_utils import atomic_write
from speechbrain_ext.manifest import ManifestError, read_manifest, speaker_count

# the yaml keys needed before the yaml is loaded: preparation and, for a speaker classifier, its size
PREPARATION_KEYS = ("prepare_data", "train_csv")
CLASSIFIER_KEYS = ("out_n_neurons", "speed_perturb", "speed_as_speaker")


def prepare(hparams_file: str, overrides: str) -> str:
    """Run the yaml's ``prepare_data``; return ``overrides`` with ``out_n_neurons`` when the yaml leaves it null
    (a yaml without ``out_n_neurons``, the digit recogniser's, has no speaker classifier to size).

    ``out_n_neurons: null`` means "the training speakers of the prepared ``train.csv``" (x speeds with
    ``speed_as_speaker``; an explicit value must equal that). HyperPyYAML builds the classifier when it loads
    the yaml, so only the ``PREPARATION_KEYS`` nodes are read first; the count then goes to the one full load
    as an override, which also writes it into the run's ``hyperparams.yaml`` that export and evaluation read.
    """
    keys = PREPARATION_KEYS + CLASSIFIER_KEYS * ("out_n_neurons" in raw_tree(hparams_file)[0])
    nodes = read_nodes(hparams_file, keys, overrides, fill_placeholders=False)
    built = build_modules({key: nodes[key] for key in ("prepare_data", "speed_perturb") if key in nodes})
    run_on_main(built["prepare_data"])
    if "out_n_neurons" not in nodes or nodes["out_n_neurons"] is not None:
        return overrides
    size = speaker_count(nodes["train_csv"]) * classes_per_speaker(built["speed_perturb"], nodes["speed_as_speaker"])
    return f"{overrides}\nout_n_neurons: {size}".strip()


def save_hparams(composed: str, hparams_file: str, output_folder: str) -> None:
    """Write the run's ``hyperparams.yaml`` (what export and evaluation read), atomically. Not SpeechBrain's
    ``create_experiment_directory(hyperparams_to_save=...)``: that re-reads the file alone, missing its ``base``."""
    with atomic_write(os.path.join(output_folder, "hyperparams.yaml")) as f:
        f.write(f"# Generated from {os.path.abspath(hparams_file)} with its base and overrides\n{composed}")


def prepare_augmentation_sources(hparams: dict) -> None:
    """Generate noise and RIR CSVs when ``generate_augment_sources`` asks for it.

    With it off, ``noise_csv``/``rir_csv`` must name existing CSVs (e.g. MUSAN).
    """
    if not hparams.get("generate_augment_sources", False):
        for key in ("noise_csv", "rir_csv"):
            path = hparams.get(key)
            if path and not os.path.isfile(path):
                sys.exit(f"error: {key}={path}: no such file (or set generate_augment_sources: True)")
        return
    if not os.path.isfile(hparams["noise_csv"]):
        wavs = [row.wav for row in read_manifest(hparams["train_csv"])]
        prepare_generated_noise(hparams["noise_csv"], wavs[:: max(len(wavs) // 200, 1)], seed=hparams["seed"])
    if not os.path.isfile(hparams["rir_csv"]):
        prepare_simulated_rirs(hparams["rir_csv"], seed=hparams["seed"])


def main(argv) -> sb.Brain:
    """Run the recipe; returns the trained Brain."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    overrides = prepare(hparams_file, overrides)
    composed = compose(hparams_file, overrides).getvalue()
    hparams = load_hyperpyyaml(composed)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"])
    run_on_main(save_hparams, args=[composed, hparams_file, hparams["output_folder"]])

    run_on_main(prepare_augmentation_sources, kwargs={"hparams": hparams})
    brain_class = hparams["brain_class"]
    train, valid = brain_class.datasets(hparams)
    brain = brain_class(modules=hparams["modules"], opt_class=hparams["opt_class"],
                        hparams=hparams, run_opts=run_opts, checkpointer=hparams["checkpointer"])
    brain.fit(hparams["epoch_counter"], train, valid,
              train_loader_kwargs=hparams["train_dataloader_options"],
              valid_loader_kwargs=hparams["valid_dataloader_options"])
    if sb.utils.distributed.if_main_process():
        print(f"training done: checkpoints in {hparams['save_folder']}, log in {hparams['train_log']}")
    return brain


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except (ConfigError, ModelError, ManifestError, FileNotFoundError) as err:  # bad hparams, data or paths: one line
        sys.exit(f"error: {err}")
