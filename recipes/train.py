#!/usr/bin/env python3
"""Train a speaker-embedding model: pre-training or transfer, chosen by the yaml.

Usage::

    python recipes/train.py hparams/pretrain_demo.yaml [--overrides]
    python recipes/train.py hparams/transfer_demo.yaml --pretrained_path=results/.../save
    torchrun --standalone --nproc_per_node=4 recipes/train.py hparams/pretrain_ecapa_cnceleb.yaml

The yaml names the Brain (``brain_class``), the data preparation
(``prepare_data``, skipped with ``--skip_prep=True``) and everything else; any
key can be overridden on the command line (``--number_of_epochs=2``).
SpeechBrain's run options apply (``--device``, ``--debug``,
``--distributed_backend``, ``--precision``, ``--ckpt_interval_steps``...).
A killed run resumes from its last checkpoint when restarted with the same
command.
"""
import os
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml
from speechbrain.utils.distributed import run_on_main

from speechbrain_ext.augment import prepare_generated_noise, prepare_simulated_rirs
from speechbrain_ext.dataio import speaker_datasets


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
        with open(hparams["train_csv"]) as f:
            rows = [line.split(",")[2] for line in f.read().splitlines()[1:] if line]
        prepare_generated_noise(hparams["noise_csv"], rows[:: max(len(rows) // 200, 1)],
                                seed=hparams["seed"])
    if not os.path.isfile(hparams["rir_csv"]):
        prepare_simulated_rirs(hparams["rir_csv"], seed=hparams["seed"])


def check_classifier_size(hparams: dict, num_speakers: int) -> None:
    """Fail clearly when ``out_n_neurons`` does not match the training speakers."""
    speeds = hparams["speed_perturb"].speeds if hparams.get("speed_perturb") is not None else [100]
    factor = len(speeds) if hparams.get("speed_as_speaker") else 1
    if hparams["out_n_neurons"] != num_speakers * factor:
        sys.exit(f"error: out_n_neurons={hparams['out_n_neurons']} but {hparams['train_csv']} has "
                 f"{num_speakers} speakers (x{factor} speeds): set --out_n_neurons="
                 f"{num_speakers * factor}")


def main(argv) -> sb.Brain:
    """Run the recipe; returns the trained Brain."""
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(experiment_directory=hparams["output_folder"],
                                   hyperparams_to_save=hparams_file, overrides=overrides)

    run_on_main(hparams["prepare_data"])
    run_on_main(prepare_augmentation_sources, kwargs={"hparams": hparams})
    brain_class = hparams["brain_class"]
    train, valid, encoder = speaker_datasets(hparams, hparams[brain_class.train_crop_key])
    check_classifier_size(hparams, len(encoder))

    brain = brain_class(modules=hparams["modules"], opt_class=hparams["opt_class"],
                                   hparams=hparams, run_opts=run_opts,
                                   checkpointer=hparams["checkpointer"])
    brain.num_speakers = len(encoder)
    brain.fit(hparams["epoch_counter"], train, valid,
              train_loader_kwargs=hparams["train_dataloader_options"],
              valid_loader_kwargs=hparams["valid_dataloader_options"])
    if sb.utils.distributed.if_main_process():
        print(f"training done: checkpoints in {hparams['save_folder']}, "
              f"log in {hparams['train_log']}")
    return brain


if __name__ == "__main__":
    main(sys.argv[1:])
