"""Tests of data_prep.cnceleb_prepare on a miniature CN-Celeb1/CN-Celeb2 release."""
import csv
import os
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from data_prep import cnceleb_prepare
from data_prep.cnceleb_prepare import build_parser, prepare_cnceleb
from data_prep.common import PrepError, run_cli

SR = 16000
# training files: genre-session-utt -> seconds (short ones concatenated within genre, 12 s chunked)
TRAIN_FILES = {"singing-01-001": 1.0, "singing-01-002": 2.0, "singing-02-001": 3.0, "interview-01-001": 1.5,
               "interview-01-002": 12.0, "speech-01-001": 6.0, "speech-01-002": 0.5}
DEV_SPEAKERS = ["id00000", "id00001", "id00002"]
EVAL_SPEAKERS = ["id00800", "id00801"]
TEST_FILES = ["id00800-singing-01-005", "id00800-drama-02-001", "id00801-vlog-01-001", "id00801-speech-03-002"]
BAD_TEST = "id00801-movie-01-001"


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_lines(path, lines):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # never write through a hard link into the shared release
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture(scope="module")
def release(tmp_path_factory, write_audio):
    """``(CN-Celeb_flac, CN-Celeb2_flac)`` with the release's names and list formats."""
    base = tmp_path_factory.mktemp("release")
    cn1, cn2 = base / "CN-Celeb_flac", base / "CN-Celeb2_flac"
    for spk in DEV_SPEAKERS + EVAL_SPEAKERS:
        for name, seconds in TRAIN_FILES.items():
            write_audio(cn1 / "data" / spk / f"{name}.flac", seconds)
    write_lines(cn1 / "dev" / "dev.lst", DEV_SPEAKERS)
    for spk in EVAL_SPEAKERS:
        write_audio(cn1 / "eval" / "enroll" / f"{spk}-enroll.flac", 8.0)
    for name in TEST_FILES:
        write_audio(cn1 / "eval" / "test" / f"{name}.flac", 2.5)
    (cn1 / "eval" / "test" / f"{BAD_TEST}.flac").write_bytes(b"")
    lists = cn1 / "eval" / "lists"
    write_lines(lists / "enroll.lst", [f"{s}-enroll enroll/{s}-enroll.wav" for s in EVAL_SPEAKERS])
    write_lines(lists / "enroll.map",
                [f"{s}-enroll {s}/singing-01-001.wav {s}/speech-01-001.wav" for s in EVAL_SPEAKERS])
    write_lines(lists / "trials.lst", [f"{s}-enroll test/{t}.wav {int(t.startswith(s))}"
                                       for s in EVAL_SPEAKERS for t in TEST_FILES + [BAD_TEST]])
    for name, seconds in TRAIN_FILES.items():
        write_audio(cn2 / "data" / "id10000" / f"{name}.flac", seconds)
    write_lines(cn2 / "spk.lst", ["id10000"])
    return cn1, cn2


@pytest.fixture(scope="module")
def prepared(release, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    prepare_cnceleb(str(release[0]), str(out), cnceleb2_folder=str(release[1]))
    return out


def copy_release(release, dest):
    """A hard-linked copy of CN-Celeb1 that a test may break."""
    return Path(shutil.copytree(release[0], dest / "CN-Celeb_flac", copy_function=os.link))


def test_train_valid_speakers_genres_and_disjointness(prepared):
    train, valid = read_csv(prepared / "train.csv"), read_csv(prepared / "valid.csv")
    assert list(train[0]) == ["ID", "duration", "wav", "start", "stop", "spk_id", "genre"]
    assert {r["spk_id"] for r in train} == set(DEV_SPEAKERS) | {"id10000"}
    assert not {r["spk_id"] for r in train + valid} & set(EVAL_SPEAKERS)
    files = [f for r in train + valid for f in r["wav"].split(";")]
    assert len(set(files)) == 4 * len(TRAIN_FILES)
    valid_files = {(r["spk_id"], f) for r in valid for f in r["wav"].split(";")}
    assert Counter(spk for spk, _ in valid_files) == {s: 1 for s in DEV_SPEAKERS + ["id10000"]}
    for row in train + valid:
        genres = {Path(f).stem.split("-")[0] for f in row["wav"].split(";")}
        assert genres == {row["genre"]}, "concatenation stays within speaker and genre"
        assert {Path(f).parent.name for f in row["wav"].split(";")} == {row["spk_id"]}


def test_concatenation_and_chunk_rows(prepared):
    rows = {r["ID"]: r for r in read_csv(prepared / "train.csv") + read_csv(prepared / "valid.csv")}
    spk = next(s for s in DEV_SPEAKERS if f"{s}/singing-01-001+2" in rows)
    cat = rows[f"{spk}/singing-01-001+2"]
    assert [Path(f).stem for f in cat["wav"].split(";")] == ["singing-01-001", "singing-01-002", "singing-02-001"]
    assert (cat["start"], cat["stop"], cat["duration"]) == ("0", str(6 * SR), "6.000")
    chunks = sorted((int(r["start"]), int(r["stop"]))
                    for i, r in rows.items() if i.startswith(f"{spk}/interview-01-002#"))
    assert chunks == [(0, 6 * SR), (6 * SR, 12 * SR)]
    assert all(sf.info(r["wav"]).frames == 12 * SR for i, r in rows.items() if "#" in i)


def test_enroll_test_and_trials(prepared):
    enroll = read_csv(prepared / "enroll.csv")
    assert [(r["ID"], r["spk_id"], Path(r["wav"]).name, r["stop"]) for r in enroll] == [
        (f"{s}-enroll", s, f"{s}-enroll.flac", str(8 * SR)) for s in EVAL_SPEAKERS]
    test = read_csv(prepared / "test.csv")
    assert sorted(r["ID"] for r in test) == sorted(TEST_FILES)
    assert {r["ID"]: r["genre"] for r in test}["id00800-drama-02-001"] == "drama"
    trials = [line.split() for line in (prepared / "trials.txt").read_text().splitlines()]
    assert len(trials) == len(EVAL_SPEAKERS) * len(TEST_FILES)
    for e, t, label in trials:
        assert label == ("target" if t.startswith(e.split("-")[0]) else "nontarget")
    log = (prepared / "prep.log").read_text()
    assert "2 trials dropped: they name a skipped file" in log and f"{BAD_TEST}.flac (0 bytes)" in log
    assert log.rstrip().endswith(f"skipped 1 file: 1 empty — see {prepared / 'prep.log'}")


def test_avg_enrolment_lists_enroll_map_utterances(release, tmp_path):
    prepare_cnceleb(str(release[0]), str(tmp_path), enroll_mode="avg", min_duration=0, max_duration=0)
    row = read_csv(tmp_path / "enroll.csv")[0]
    assert [Path(f).relative_to(release[0] / "data").as_posix() for f in row["wav"].split(";")] == [
        "id00800/singing-01-001.flac", "id00800/speech-01-001.flac"]
    assert row["stop"] == str(7 * SR)
    train = read_csv(tmp_path / "train.csv")
    assert not any(";" in r["wav"] or "#" in r["ID"] for r in train)
    assert {r["spk_id"] for r in train} == set(DEV_SPEAKERS)


def test_avg_enrolment_naming_a_missing_file(release, tmp_path):
    root = copy_release(release, tmp_path)
    (root / "data" / "id00801" / "speech-01-001.flac").unlink()
    with pytest.raises(PrepError, match=f"enroll.map:2: file not found: {root}/data/id00801/speech-01-001.wav"):
        prepare_cnceleb(str(root), str(tmp_path / "out"), enroll_mode="avg")


def test_cnceleb2_only(release, tmp_path):
    prepare_cnceleb(str(release[0]), str(tmp_path), cnceleb2_folder=str(release[1]), use_cnceleb1_dev=False)
    assert {r["spk_id"] for r in read_csv(tmp_path / "train.csv")} == {"id10000"}


def test_cnceleb_config_sizes_its_classifier_from_the_prepared_speakers(release, tmp_path):
    """pretrain_ecapa_cnceleb.yaml leaves out_n_neurons null: the recipe prepares the data and sizes the
    classifier to its 4 training speakers x 3 speeds (speed_as_speaker), before the model is built."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "recipes"))
    import train

    yaml = Path(train.__file__).resolve().parents[1] / "hparams" / "pretrain_ecapa_cnceleb.yaml"
    overrides = f"data_folder: {release[0]}\ncnceleb2_folder: {release[1]}\noutput_folder: {tmp_path}"
    assert train.prepare(str(yaml), overrides) == overrides + "\nout_n_neurons: 12"
    assert {r["spk_id"] for r in read_csv(tmp_path / "manifests" / "train.csv")} == set(DEV_SPEAKERS) | {"id10000"}
    explicit = overrides + "\nout_n_neurons: 99"  # an explicit value is left for the recipe to check
    assert train.prepare(str(yaml), explicit) == explicit


def test_rerun_skips_changed_options_reprepare(release, tmp_path, monkeypatch):
    prepare_cnceleb(str(release[0]), str(tmp_path))
    monkeypatch.setattr(cnceleb_prepare, "scan_audio", lambda *a, **k: pytest.fail("should have skipped"))
    prepare_cnceleb(str(release[0]), str(tmp_path))
    with pytest.raises(pytest.fail.Exception):
        prepare_cnceleb(str(release[0]), str(tmp_path), valid_ratio=0.3)


def test_crash_before_trials_leaves_no_trusted_output(release, tmp_path, monkeypatch):
    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(cnceleb_prepare, "write_trials", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_cnceleb(str(release[0]), str(tmp_path))
    assert not (tmp_path / "prep_opts.json").exists() and not (tmp_path / "trials.txt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("breakage, message", [
    (lambda r: (r / "dev" / "dev.lst").unlink(), "missing CN-Celeb list file: {r}/dev/dev.lst"),
    (lambda r: (r / "eval" / "lists" / "trials.lst").unlink(), "missing CN-Celeb list file: {r}/eval/lists/trials.lst"),
    (lambda r: (r / "eval" / "test" / "id00800-drama-02-001.flac").unlink(),
     "{r}/eval/lists/trials.lst:2: file not found: {r}/eval/test/id00800-drama-02-001.wav"),
    (lambda r: shutil.rmtree(r / "eval"), "not a CN-Celeb1 folder (expected data/ and eval/ inside): {r}"),
    (lambda r: shutil.rmtree(r / "data" / "id00001"), "{r}/dev/dev.lst:2: speaker folder not found: {r}/data/id00001"),
    (lambda r: write_lines(r / "eval" / "lists" / "trials.lst", ["id00800-enroll test/x.wav yes"]),
     "{r}/eval/lists/trials.lst:1: expected 'enroll_id test/<file>.wav 0|1'"),
    (lambda r: write_lines(r / "eval" / "lists" / "enroll.lst", ["id00800-enroll enroll/id00800-enroll.wav"]),
     "{r}/eval/lists/enroll.lst: 1 enrolment ids of trials.lst are not listed, e.g. id00801-enroll"),
])
def test_bad_release_raises_one_line_naming_the_path(release, tmp_path, breakage, message):
    root = copy_release(release, tmp_path)
    breakage(root)
    with pytest.raises(PrepError) as error:
        prepare_cnceleb(str(root), str(tmp_path / "out"))
    assert str(error.value).startswith(message.format(r=root)) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_missing_folders(release, tmp_path):
    with pytest.raises(PrepError, match=f"data folder not found: {tmp_path / 'nope'}"):
        prepare_cnceleb(str(tmp_path / "nope"), str(tmp_path / "out"))
    (tmp_path / "cn2" / "data").mkdir(parents=True)
    with pytest.raises(PrepError, match=f"missing speaker list: {tmp_path / 'cn2' / 'spk.lst'}"):
        prepare_cnceleb(str(release[0]), str(tmp_path / "out"), cnceleb2_folder=str(tmp_path / "cn2"))
    with pytest.raises(PrepError, match="not a CN-Celeb2 folder"):
        prepare_cnceleb(str(release[0]), str(tmp_path / "out"), cnceleb2_folder=str(tmp_path))


def test_cli_one_line_errors(tmp_path, capsys):
    for argv, message in [
        (["--data_folder", str(tmp_path), "--save_folder", str(tmp_path)], "not a CN-Celeb1 folder"),
        (["--data_folder", str(tmp_path), "--save_folder", str(tmp_path), "--enroll_mode", "x"], "invalid choice"),
        (["--data_folder", str(tmp_path), "--save_folder", str(tmp_path), "--no-use_cnceleb1_dev"], "no training data"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            run_cli(build_parser(), prepare_cnceleb, argv)
        err = capsys.readouterr().err + str(exit_info.value.code)
        assert message in err and "Traceback" not in err
