"""Prepare SHAL, the short digit-string corpus, as a speaker-folder corpus.

SHAL's exact layout is not public; it is read as ``<root>/<speaker>/<utt>``
(:func:`data_prep.folder_prepare.prepare_folder`) with defaults for short
digit strings: training files are concatenated up to 3 s (the transfer crop
fits in one row), nothing is chunked, and each speaker enrols with 3 strings.

Usage: ``python data_prep/shal_prepare.py --data_folder SHAL --save_folder OUT``.
"""
from data_prep.common import run_cli
from data_prep.folder_prepare import build_parser, folder_defaults, prepare_folder

SHAL_DEFAULTS = {**folder_defaults(), "min_duration": 3.0, "max_duration": 0.0, "enroll_utts": 3}


def prepare_shal(data_folder: str, save_folder: str, **options) -> None:
    """:func:`prepare_folder` with SHAL defaults; ``options`` override them.

    Example
    -------
    >>> import tempfile
    >>> prepare_shal("tests/samples", tempfile.mkdtemp(), skip_prep=True)
    """
    prepare_folder(data_folder, save_folder, **{**SHAL_DEFAULTS, **options})


if __name__ == "__main__":
    run_cli(build_parser(__doc__.splitlines()[0], SHAL_DEFAULTS), prepare_shal)
