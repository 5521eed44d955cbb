"""Prepare SHAL, the short digit-string corpus, as a speaker-folder corpus.

SHAL's exact layout is not public; it is read as ``<root>/<speaker>/<utt>``
(:func:`data_prep.folder_prepare.prepare_folder`) with defaults for short
digit strings: training files are concatenated up to 3 s (the transfer crop
fits in one row), nothing is chunked, and each speaker enrols with 3 strings.
Transcripts, when the corpus has them (``<root>/transcripts.tsv`` or ``<utt>.txt``),
fill the manifests' ``wrd`` column for the digit recogniser.

Usage: ``python data_prep/shal_prepare.py --data_folder SHAL --save_folder OUT``.
"""
from data_prep.common import run_cli
from data_prep.folder_prepare import build_parser, folder_defaults, prepare_folder

SHAL_DEFAULTS = {**folder_defaults(), "min_duration": 3.0, "max_duration": 0.0, "enroll_utts": 3}


def prepare_shal(data_folder: str, save_folder: str, **options) -> None:
    """:func:`prepare_folder` with SHAL defaults; ``options`` override them.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> from pathlib import Path
    >>> from speechbrain_ext.manifest import read_manifest
    >>> corpus, out = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> for spk, utt in [(s, u) for s in "ab" for u in range(7)]:  # 2 speakers x 7 strings of 1 s
    ...     (corpus / spk).mkdir(exist_ok=True)
    ...     sf.write(corpus / spk / f"{utt}.wav", np.full(16000, 0.1, "float32"), 16000)
    >>> prepare_shal(str(corpus), str(out), num_test_speakers=0, valid_ratio=0, num_workers=1)
    >>> [(row.id, row.duration) for row in read_manifest(out / "train.csv") if row.spk_id == "a"]  # joined to >= 3 s
    [('a/0+2', 3.0), ('a/3+3', 4.0)]
    """
    prepare_folder(data_folder, save_folder, **{**SHAL_DEFAULTS, **options})


if __name__ == "__main__":
    run_cli(build_parser(__doc__.splitlines()[0], SHAL_DEFAULTS), prepare_shal)
