"""Time ``prepare_cnceleb`` on a generated CN-Celeb1-shaped tree of N tiny files.

The tree has the release's names and lists (``dev/dev.lst``, ``eval/enroll``, ``eval/test``,
``eval/lists/{enroll.lst,trials.lst}`` with ``.wav`` names); every audio file is a hard link to one of four
small FLAC files (0.8 s to 12 s), so generating 130,000 files takes seconds and almost no disk. About 10 % of
the files are test files; up to 200 enrolment speakers are each tried against every test file, as in the
real list (3.5 M trials).

Usage: ``python benchmarks/bench_prepare.py [--num_files 130000] [--num_workers 2]``.
"""
import argparse
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from data_prep.cnceleb_prepare import prepare_cnceleb

GENRES = ["singing", "interview", "speech", "vlog", "drama"]
SOURCE_SECONDS = [0.8, 1.5, 3.0, 12.0]
FILES_PER_SPEAKER = 50


def generate(root: Path, num_files: int) -> None:
    """Write a CN-Celeb1-shaped tree of ``num_files`` audio files under ``root`` (a new folder)."""
    root.mkdir(parents=True)
    sources = []
    for k, seconds in enumerate(SOURCE_SECONDS):
        path = root.parent / f"source{k}.flac"
        sf.write(path, (0.1 * np.random.default_rng(k).standard_normal(int(seconds * 16000))).astype("float32"), 16000)
        sources.append(path)
    num_test = num_files // 10
    num_enroll = max(1, min(200, num_test // 20))
    num_dev = max(1, (num_files - num_test - num_enroll) // FILES_PER_SPEAKER)
    dev_speakers = [f"id{i:05d}" for i in range(num_dev)]
    eval_speakers = [f"id{num_dev + i:05d}" for i in range(num_enroll)]
    made = 0
    for spk in dev_speakers:
        folder = root / "data" / spk
        folder.mkdir(parents=True)
        for u in range(FILES_PER_SPEAKER):
            os.link(sources[made % len(sources)], folder / f"{GENRES[u % len(GENRES)]}-01-{u:03d}.flac")
            made += 1
    (root / "dev").mkdir()
    (root / "dev" / "dev.lst").write_text("".join(f"{s}\n" for s in dev_speakers))
    for sub in ("enroll", "test", "lists"):
        (root / "eval" / sub).mkdir(parents=True)
    tests = [f"{eval_speakers[i % num_enroll]}-{GENRES[i % len(GENRES)]}-01-{i:05d}" for i in range(num_test)]
    for i, name in enumerate(tests):
        os.link(sources[i % len(sources)], root / "eval" / "test" / f"{name}.flac")
    for spk in eval_speakers:
        os.link(sources[-1], root / "eval" / "enroll" / f"{spk}-enroll.flac")
    lists = root / "eval" / "lists"
    lists.joinpath("enroll.lst").write_text("".join(f"{s}-enroll enroll/{s}-enroll.wav\n" for s in eval_speakers))
    with open(lists / "trials.lst", "w") as f:
        for spk in eval_speakers:
            f.writelines(f"{spk}-enroll test/{t}.wav {int(t.startswith(spk))}\n" for t in tests)


def main() -> None:
    """Generate the tree, time one preparation, print files/s."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num_files", type=int, default=130000)
    parser.add_argument("--num_workers", type=int, default=2)
    args = parser.parse_args()
    if args.num_files < 100:
        parser.error("--num_files must be >= 100")
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        root, out = Path(tmp) / "CN-Celeb_flac", Path(tmp) / "out"
        start = time.perf_counter()
        generate(root, args.num_files)
        generated, cpu_before = time.perf_counter(), os.times()
        prepare_cnceleb(str(root), str(out), num_workers=args.num_workers)
        elapsed, cpu_after = time.perf_counter() - generated, os.times()
        num_audio = sum(1 for _ in root.rglob("*.flac"))
        num_trials = sum(1 for _ in open(out / "trials.txt"))
    print(f"generated {num_audio} files in {generated - start:.1f} s")
    main_cpu = sum(cpu_after[:2]) - sum(cpu_before[:2])
    worker_cpu = sum(cpu_after[2:4]) - sum(cpu_before[2:4])
    print(f"prepared {num_audio} files ({num_trials} trials) in {elapsed:.1f} s wall with {args.num_workers} workers: "
          f"{num_audio / elapsed:.0f} files/s")
    print(f"CPU: {main_cpu:.1f} s main process + {worker_cpu:.1f} s workers (wall is higher when cores are shared)")


if __name__ == "__main__":
    main()
