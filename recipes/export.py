#!/usr/bin/env python3
"""Export a trained model as a SpeechBrain ``SpeakerRecognition`` model folder.

Usage::

    python recipes/export.py --hparams_file hparams/pretrain_demo.yaml \\
        --checkpoint_folder results/pretrain_demo/1986/save --output_folder model \\
        [--threshold_file results/eval_demo/threshold.json] \\
        [--results_json results/eval_demo/results.json] [--onnx] [--push-to-hub USER/REPO] \\
        [--key=value ...]

``--key=value`` pairs override keys of the training yaml (as for
``recipes/train.py``). Afterwards, offline::

    SpeakerRecognition.from_hparams(source=<abs model dir>, savedir=<any>)

Errors are one line on stderr and a non-zero exit status.
"""
import argparse
import logging
import sys

from hyperpyyaml import load_hyperpyyaml

from speechbrain_ext.export import (
    ExportError,
    build_modules,
    export_model,
    files_in,
    load_state,
    push_to_hub,
    read_model_nodes,
)


def parse_args(argv):
    """Known options plus ``--key=value`` yaml overrides."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hparams_file", required=True, help="training yaml (architecture)")
    p.add_argument("--checkpoint_folder", required=True, help="training save folder, CKPT+* folder")
    p.add_argument("--output_folder", required=True, help="model folder to write")
    p.add_argument("--threshold_file", help="threshold.json from recipes/evaluate.py")
    p.add_argument("--results_json", help="results.json from recipes/evaluate.py (model card table)")
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


def write_onnx(args, overrides, folder) -> None:
    """Export the embedding pipeline to ONNX and print its parity with PyTorch."""
    from speechbrain_ext.onnx_export import export_onnx, onnx_parity

    modules = build_modules(read_model_nodes(args.hparams_file, ("compute_features", "mean_var_norm",
                                                                 "embedding_model"), overrides))
    load_state(modules["embedding_model"], folder / "embedding_model.ckpt", "embedding_model")
    for module in modules.values():
        module.eval()
    export_onnx(modules, folder / "embedding_model.onnx")
    diff = onnx_parity(folder / "embedding_model.onnx", modules)
    if diff > 1e-4:
        raise ExportError(f"ONNX graph differs from PyTorch by {diff:.2e} (> 1e-4)")
    print(f"embedding_model.onnx: max |onnxruntime - PyTorch| = {diff:.2e} on 0.5-4 s clips")


def main(argv) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    args, overrides = parse_args(argv)
    try:
        folder = export_model(args.hparams_file, args.checkpoint_folder, args.output_folder,
                              args.threshold_file, args.results_json, overrides)
        if args.onnx:
            write_onnx(args, overrides, folder)
        print(f"model folder {folder}: {', '.join(files_in(folder))}")
        if args.push_to_hub:
            print(f"pushed to {args.push_to_hub}: {push_to_hub(folder, args.push_to_hub)}")
    except (ExportError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
