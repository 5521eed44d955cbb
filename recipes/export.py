#!/usr/bin/env python3
"""Export a trained model as a SpeechBrain ``SpeakerRecognition`` model folder.

Usage::

    python recipes/export.py --checkpoint_folder results/transfer_shal/1986/save --output_folder model \\
        [--threshold_file results/eval_shal/threshold.json] \\
        [--results_json results/eval_shal/results.json] [--digits_model results/digits_ctc/1986/save] \\
        [--onnx] [--push-to-hub USER/REPO]

The architecture comes from the run's own ``hyperparams.yaml`` (README, "Export and inference");
``--hparams_file`` and ``--key=value`` overrides are for a checkpoint without one. An AS-norm
``threshold.json`` brings its cohort (``cohort.pt`` beside it). Errors: one line on stderr, a non-zero exit status.
"""
import argparse
import logging
import sys

from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.builder import ModelError
from speechbrain_ext.model_folder import load_extractor
from speechbrain_ext.export import export_model, files_in
from speechbrain_ext.hub import push_to_hub


def parse_args(argv):
    """Known options plus ``--key=value`` yaml overrides."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hparams_file", help="training yaml (default: the run's own hyperparams.yaml)")
    p.add_argument("--checkpoint_folder", required=True, help="training save folder, CKPT+* folder")
    p.add_argument("--output_folder", required=True, help="model folder to write")
    p.add_argument("--threshold_file", help="threshold.json from recipes/evaluate.py")
    p.add_argument("--results_json", help="results.json from recipes/evaluate.py (model card table)")
    p.add_argument("--digits_model", help="save folder of a digit recogniser run (hparams/digits_ctc*.yaml): "
                                          "exported as <output_folder>/digits/ for EncoderASR")
    p.add_argument("--onnx", action="store_true", help="also write embedding_model.onnx and check it")
    p.add_argument("--push-to-hub", dest="push_to_hub", metavar="REPO", help="upload to this hub repo")
    args, rest = p.parse_known_args(argv)
    overrides = {}
    for item in rest:
        if not item.startswith("--") or "=" not in item:
            p.error(f"unrecognised argument {item!r} (yaml overrides are --key=value)")
        key, value = item[2:].split("=", 1)
        overrides[key] = load_hyperpyyaml(f"v: {value}")["v"]
    return args, overrides


def write_onnx(folder) -> None:
    """Export the model folder's embedding pipeline to ONNX and print its parity with PyTorch."""
    from speechbrain_ext.onnx_export import export_onnx, onnx_parity

    modules = dict(load_extractor(None, folder).modules)  # the folder's own hyperparams.yaml; eval mode
    export_onnx(modules, folder / "embedding_model.onnx")
    diff = onnx_parity(folder / "embedding_model.onnx", modules)
    if diff > 1e-4:
        raise ModelError(f"ONNX graph differs from PyTorch by {diff:.2e} (> 1e-4)")
    print(f"embedding_model.onnx: max |onnxruntime - PyTorch| = {diff:.2e} on 0.5-4 s clips")


def main(argv) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args, overrides = parse_args(argv)
    try:
        folder = export_model(args.hparams_file, args.checkpoint_folder, args.output_folder,
                              args.threshold_file, args.results_json, overrides, args.digits_model)
        if args.onnx:
            write_onnx(folder)
        print(f"model folder {folder}: {', '.join(files_in(folder))}")
        if args.push_to_hub:
            print(f"pushed to {args.push_to_hub}: {push_to_hub(folder, args.push_to_hub)}")
    except (ModelError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
