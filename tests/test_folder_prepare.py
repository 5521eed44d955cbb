"""Tests of data_prep.folder_prepare / shal_prepare and the shared helpers in data_prep.common."""
import csv
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import soundfile as sf

from data_prep import common, folder_prepare
from data_prep.common import PrepError, probe_audio
from data_prep.folder_prepare import build_parser, folder_defaults, prepare_folder
from data_prep.shal_prepare import prepare_shal

SR = 16000
# seconds of each file of each regular speaker: short ones (concatenated), medium, one long (chunked)
DURATIONS = [0.5, 1.5, 2.5, 3.5, 6.0, 23.0]
NUM_SPEAKERS = 8


def read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_trials(path):
    return [tuple(line.split()) for line in Path(path).read_text().splitlines()]


def write_bad_files(write_audio, folder):
    """One file per bad kind; returns the expected skip reason of each."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.wav").write_bytes(b"")
    (folder / "garbage.wav").write_bytes(os.urandom(2000))
    full = write_audio(folder / "cut.wav", 1.0).read_bytes()
    (folder / "cut.wav").write_bytes(full[: len(full) // 2])
    full = write_audio(folder / "cut.flac", 1.0).read_bytes()
    (folder / "cut.flac").write_bytes(full[: len(full) // 2])
    write_audio(folder / "nothing.wav", 0.0)
    write_audio(folder / "stereo.wav", 1.0, channels=2)
    write_audio(folder / "rate8k.wav", 1.0, rate=8000)
    return {"empty.wav": "empty", "garbage.wav": "unreadable", "cut.wav": "truncated", "cut.flac": "truncated",
            "nothing.wav": "zero_duration", "stereo.wav": "stereo", "rate8k.wav": "not_16k"}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, write_audio):
    root = tmp_path_factory.mktemp("corpus")
    for s in range(NUM_SPEAKERS):
        for u, seconds in enumerate(DURATIONS):
            write_audio(root / f"spk{s}" / f"utt{u}.{'flac' if u % 2 else 'wav'}", seconds)
    write_audio(root / "loner" / "only.wav", 2.0)
    write_audio(root / "pair" / "a.wav", 1.0)
    write_audio(root / "pair" / "b.wav", 1.0)
    write_audio(root / "not_in_a_speaker_folder.wav", 1.0)
    write_bad_files(write_audio, root / "spk0" / "bad")
    return root


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    prepare_folder(str(corpus), str(out), num_test_speakers=3)
    return out


def files_of(rows):
    return [w for row in rows for w in row["wav"].split(";")]


def frames(path):
    return sf.info(path).frames


def test_outputs_and_speaker_disjoint_split(prepared, corpus):
    names = {p.name for p in prepared.iterdir()}
    assert names == {"train.csv", "valid.csv", "enroll.csv", "test.csv", "trials.txt", "trials_1s.txt",
                     "trials_2s.txt", "trials_3s.txt", "prep.log", "prep_opts.json", "prep_outputs.txt"}
    train, valid = read_csv(prepared / "train.csv"), read_csv(prepared / "valid.csv")
    enroll, test = read_csv(prepared / "enroll.csv"), read_csv(prepared / "test.csv")
    train_spk = {r["spk_id"] for r in train + valid}
    test_spk = {r["spk_id"] for r in test}
    assert len(test_spk) == 3 and not train_spk & test_spk
    assert {r["spk_id"] for r in enroll} == test_spk
    assert train_spk | test_spk == {f"spk{s}" for s in range(NUM_SPEAKERS)} | {"loner", "pair"}
    # every usable file is used exactly once (chunks of one file count once)
    full_test = [r for r in test if "@" not in r["ID"]]
    used = Counter(set(files_of(train)) | set(files_of(valid))) + Counter(files_of(enroll) + files_of(full_test))
    usable = {str(p) for p in corpus.glob("*/*.*")} - {str(corpus / "not_in_a_speaker_folder.wav")}
    assert set(used) == usable and set(used.values()) == {1}
    assert not set(files_of(train)) & set(files_of(valid))
    assert list(train[0]) == ["ID", "duration", "wav", "start", "stop", "spk_id"]


def test_enrolment_rows_list_three_files_of_their_speaker(prepared):
    for row in read_csv(prepared / "enroll.csv"):
        files = row["wav"].split(";")
        assert row["ID"] == f"{row['spk_id']}-enroll" and len(files) == 3
        assert all(Path(f).parent.name == row["spk_id"] for f in files)
        assert int(row["stop"]) == sum(frames(f) for f in files) and row["start"] == "0"


def test_rows_shorter_than_min_duration_only_when_speaker_has_no_more(prepared):
    for name in ("train.csv", "valid.csv"):
        rows = read_csv(prepared / name)
        short_rows = Counter(r["spk_id"] for r in rows if all(frames(f) < 5 * SR for f in r["wav"].split(";")))
        for row in rows:
            if int(row["stop"]) - int(row["start"]) < 5 * SR:
                assert short_rows[row["spk_id"]] == 1, row


def test_concatenation_and_chunk_boundaries(prepared):
    rows = read_csv(prepared / "train.csv") + read_csv(prepared / "valid.csv")
    chunks = {}
    for row in rows:
        files = row["wav"].split(";")
        start, stop = int(row["start"]), int(row["stop"])
        assert float(row["duration"]) == pytest.approx((stop - start) / SR, abs=1e-3)
        if len(files) > 1:
            assert start == 0 and stop == sum(frames(f) for f in files)
            assert all(frames(f) < 5 * SR for f in files)
            assert len({Path(f).parent for f in files}) == 1
            assert row["ID"] == f"{row['spk_id']}/{Path(files[0]).stem}+{len(files) - 1}"
        elif "#" in row["ID"]:
            chunks.setdefault(files[0], []).append((start, stop))
        else:
            assert (start, stop) == (0, frames(files[0])) and stop <= 10 * SR
    assert chunks, "the 23 s files must be chunked"
    for path, bounds in chunks.items():
        bounds.sort()
        assert bounds[0][0] == 0 and bounds[-1][1] == frames(path) == 23 * SR
        assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
        assert all(5 * SR <= b - a <= 10 * SR for a, b in bounds) and len(bounds) == 3


def test_concatenate_groups_in_order():
    utts = [common.Utterance(f"s/{i}", f"/{i}.wav", n, "s") for i, n in enumerate([2, 2, 2, 4, 1])]
    rows = common.concatenate(utts, 5)
    assert [(r.files, r.stop) for r in rows] == [(["/0.wav", "/1.wav", "/2.wav"], 6), (["/3.wav", "/4.wav"], 5)]
    assert [r.stop for r in common.concatenate(utts[:2], 5)] == [4]
    leftover = [common.Utterance(f"s/{i}", f"/{i}.wav", n, "s") for i, n in enumerate([3, 3, 4])]
    assert [(r.id, r.stop) for r in common.concatenate(leftover, 5)] == [("s/0+2", 10)]


def test_test_duration_crops(prepared):
    test = read_csv(prepared / "test.csv")
    full = {r["ID"]: r for r in test if "@" not in r["ID"]}
    for d in (1, 2, 3):
        crops = {r["ID"]: r for r in test if r["ID"].endswith(f"@{d}s")}
        long_enough = {i for i, r in full.items() if int(r["stop"]) >= d * SR}
        assert {i.split("@")[0] for i in crops} == long_enough
        for cid, row in crops.items():
            start, stop = int(row["start"]), int(row["stop"])
            assert stop - start == d * SR and 0 <= start and stop <= int(full[cid.split("@")[0]]["stop"])
            assert row["wav"] == full[cid.split("@")[0]]["wav"] and row["duration"] == f"{d:.3f}"
    assert any(int(r["start"]) > 0 for r in test if "@" in r["ID"]), "crop positions must be random"
    assert "test utterances shorter than 1 s are left out of the 1s condition" in (prepared / "prep.log").read_text()


def test_trial_labels_balance_and_duration_lists(prepared):
    enroll = {r["ID"]: r["spk_id"] for r in read_csv(prepared / "enroll.csv")}
    test = {r["ID"]: r["spk_id"] for r in read_csv(prepared / "test.csv")}
    trials = read_trials(prepared / "trials.txt")
    labels = Counter(label for _, _, label in trials)
    assert labels["target"] == 3 * (len(DURATIONS) - 3) and labels["nontarget"] == labels["target"]
    assert len(set(trials)) == len(trials)
    for e, t, label in trials:
        assert "@" not in t and label == ("target" if enroll[e] == test[t] else "nontarget")
    for d in (1, 2, 3):
        short = read_trials(prepared / f"trials_{d}s.txt")
        assert short and all(t.endswith(f"@{d}s") and t in test for _, t, _ in short)
        assert {(e, t.split("@")[0], y) for e, t, y in short} == {
            (e, t, y) for e, t, y in trials if f"{t}@{d}s" in test}


def test_nontarget_ratio(corpus, tmp_path):
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=3, nontarget_ratio=2.0, test_durations=())
    labels = Counter(label for _, _, label in read_trials(tmp_path / "trials.txt"))
    assert labels["nontarget"] == 2 * labels["target"] > 0
    assert not list(tmp_path.glob("trials_*"))


def test_bad_files_are_skipped_with_summary(prepared, corpus):
    log = (prepared / "prep.log").read_text()
    assert log.rstrip().splitlines()[-1] == (
        "skipped 7 files: 2 truncated, 1 empty, 1 not_16k, 1 stereo, 1 unreadable, 1 zero_duration"
        f" — see {prepared / 'prep.log'}")
    assert "found 2 channels, the recipe expects mono" in log and "found 8000 Hz, the recipe expects 16000 Hz" in log
    assert "bad" not in "".join(files_of(read_csv(prepared / "train.csv") + read_csv(prepared / "valid.csv")))


def test_probe_audio_reasons(tmp_path, write_audio):
    expected = write_bad_files(write_audio, tmp_path)
    assert {name: probe_audio(str(tmp_path / name))[2] for name in expected} == expected
    good = write_audio(tmp_path / "ok.flac", 0.25)
    assert probe_audio(str(good)) == (str(good), 4000, "", "")


def test_single_file_and_small_speakers_train_only(prepared, corpus):
    log = (prepared / "prep.log").read_text()
    assert "speaker loner has a single file: it cannot be split, so it is used for training only" in log
    assert "speaker pair has 2 files (<= enroll_utts=3): used for training only" in log
    assert f"1 audio files directly under {corpus} ignored: not in a speaker folder" in log
    assert [r["ID"] for r in read_csv(prepared / "train.csv") if r["spk_id"] == "loner"] == ["loner/only"]
    assert not [r for r in read_csv(prepared / "valid.csv") if r["spk_id"] == "loner"]
    assert len([r for r in read_csv(prepared / "valid.csv") if r["spk_id"] == "pair"]) == 1


def test_no_test_speakers_writes_header_only(corpus, tmp_path):
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=0)
    assert (tmp_path / "enroll.csv").read_text() == (tmp_path / "test.csv").read_text() == \
        "ID,duration,wav,start,stop,spk_id\n"
    assert all((tmp_path / n).read_text() == "" for n in ("trials.txt", "trials_1s.txt"))
    assert len({r["spk_id"] for r in read_csv(tmp_path / "train.csv")}) == NUM_SPEAKERS + 2


def test_default_split_is_a_fraction_of_speakers_and_seeded(corpus, tmp_path):
    prepare_folder(str(corpus), str(tmp_path / "a"), max_duration=0, num_workers=1)
    prepare_folder(str(corpus), str(tmp_path / "b"), max_duration=0)
    prepare_folder(str(corpus), str(tmp_path / "c"), max_duration=0, seed=7)
    enroll = [{r["spk_id"] for r in read_csv(tmp_path / x / "enroll.csv")} for x in "abc"]
    assert len(enroll[0]) == round(0.2 * (NUM_SPEAKERS + 2))
    for name in ("train.csv", "valid.csv", "enroll.csv", "test.csv", "trials.txt", "trials_2s.txt"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()
    assert (tmp_path / "a" / "test.csv").read_text() != (tmp_path / "c" / "test.csv").read_text()
    assert not any("#" in r["ID"] for r in read_csv(tmp_path / "a" / "train.csv"))


def test_rerun_skips_and_changed_options_reprepare(corpus, tmp_path, monkeypatch):
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2)
    before = (tmp_path / "test.csv").read_text()

    def no_scan(*args, **kwargs):
        raise AssertionError("should have skipped")

    monkeypatch.setattr(folder_prepare, "scan_audio", no_scan)
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2)
    monkeypatch.undo()
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2, seed=99)
    assert (tmp_path / "test.csv").read_text() != before
    (tmp_path / "trials_3s.txt").unlink()
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2, seed=99)
    assert (tmp_path / "trials_3s.txt").is_file()


def test_crash_mid_run_leaves_nothing_trusted(corpus, tmp_path, monkeypatch):
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(folder_prepare, "write_trials", crash)
    with pytest.raises(KeyboardInterrupt):
        prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2, seed=5)
    assert not (tmp_path / "prep_opts.json").exists()
    monkeypatch.undo()
    calls = []
    monkeypatch.setattr(folder_prepare, "scan_audio", lambda *a, **k: calls.append(1) or common.scan_audio(*a, **k))
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2)
    assert calls, "the first options must be re-prepared: train.csv was overwritten by the crashed run"


def test_crash_inside_a_write_leaves_no_partial_file(corpus, tmp_path, monkeypatch):
    def crash(fd):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk gone"):
        prepare_folder(str(corpus), str(tmp_path), num_test_speakers=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_bad_inputs_raise_one_clear_error(corpus, tmp_path):
    with pytest.raises(PrepError, match=f"data folder not found: {tmp_path / 'nope'}"):
        prepare_folder(str(tmp_path / "nope"), str(tmp_path / "out"))
    (tmp_path / "silent" / "spk").mkdir(parents=True)
    (tmp_path / "silent" / "spk" / "notes.txt").write_text("x")
    with pytest.raises(PrepError, match="no .wav/.flac files in speaker folders under .*silent"):
        prepare_folder(str(tmp_path / "silent"), str(tmp_path / "out"))
    (tmp_path / "twins" / "spk").mkdir(parents=True)
    for suffix in (".wav", ".flac"):
        sf.write(tmp_path / "twins" / "spk" / f"a{suffix}", [0.1] * 1600, SR)
    with pytest.raises(PrepError, match="two files give the utterance id spk/a: .*a.flac and .*a.wav"):
        prepare_folder(str(tmp_path / "twins"), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()
    with pytest.raises(PrepError, match="9 test speakers requested but only 8"):
        prepare_folder(str(corpus), str(tmp_path / "out"), num_test_speakers=9)
    with pytest.raises(ValueError, match="max_duration"):
        prepare_folder(str(corpus), str(tmp_path / "out"), min_duration=5, max_duration=6)


def test_cli_errors_are_one_line(tmp_path, capsys):
    parser = build_parser("x", folder_defaults())
    for argv, message in [
        (["--data_folder", str(tmp_path / "nope"), "--save_folder", str(tmp_path)], "data folder not found"),
        (["--data_folder", str(tmp_path), "--save_folder", str(tmp_path), "--test_durations", "1,-2"], "> 0 s"),
        (["--data_folder", str(tmp_path), "--save_folder", str(tmp_path), "--valid_ratio", "1.5"], "valid_ratio"),
    ]:
        with pytest.raises(SystemExit) as exit_info:
            common.run_cli(parser, prepare_folder, argv)
        err = capsys.readouterr().err + str(exit_info.value.code)
        assert message in err and "Traceback" not in err


def test_scripts_run_with_help_and_without_torch():
    root = Path(__file__).resolve().parents[1]
    for script in ("folder_prepare.py", "shal_prepare.py", "cnceleb_prepare.py"):
        done = subprocess.run([sys.executable, str(root / "data_prep" / script), "--help"],
                              capture_output=True, text=True, cwd=root)
        assert done.returncode == 0 and "--save_folder" in done.stdout
    imports = "import sys, data_prep.cnceleb_prepare, data_prep.shal_prepare; print(sorted(sys.modules))"
    modules = subprocess.run([sys.executable, "-c", imports], capture_output=True, text=True, cwd=root).stdout
    assert "'data_prep.common'" in modules and "'torch'" not in modules and "'speechbrain'" not in modules


def test_shal_defaults(corpus, tmp_path):
    prepare_shal(str(corpus), str(tmp_path), num_test_speakers=2)
    train = read_csv(tmp_path / "train.csv")
    assert not any("#" in r["ID"] for r in train)
    assert all(int(r["stop"]) >= 3 * SR for r in train if ";" in r["wav"])
    assert '"min_duration": 3.0' in (tmp_path / "prep_opts.json").read_text()


def test_dev_split_is_disjoint_from_train_and_test(corpus, tmp_path):
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=3, num_dev_speakers=2, all_pairs=True)
    train_spk = {r["spk_id"] for name in ("train.csv", "valid.csv") for r in read_csv(tmp_path / name)}
    test_spk = {r["spk_id"] for r in read_csv(tmp_path / "test.csv")}
    dev_spk = {r["spk_id"] for r in read_csv(tmp_path / "dev" / "test.csv")}
    assert len(test_spk) == 3 and len(dev_spk) == 2
    assert not (train_spk & test_spk or train_spk & dev_spk or test_spk & dev_spk)
    assert {r["spk_id"] for r in read_csv(tmp_path / "dev" / "enroll.csv")} == dev_spk
    assert {t[0] for t in read_trials(tmp_path / "dev" / "trials.txt")} == {f"{s}-enroll" for s in dev_spk}


def test_adding_a_dev_split_keeps_the_test_speakers(corpus, tmp_path):
    prepare_folder(str(corpus), str(tmp_path / "a"), num_test_speakers=3)
    prepare_folder(str(corpus), str(tmp_path / "b"), num_test_speakers=3, num_dev_speakers=2)
    speakers = [{r["spk_id"] for r in read_csv(tmp_path / x / "enroll.csv")} for x in "ab"]
    assert speakers[0] == speakers[1]


def test_all_pairs_writes_every_enrolment_test_pair_with_right_labels(corpus, tmp_path):
    prepare_folder(str(corpus), str(tmp_path), num_test_speakers=3, all_pairs=True)
    enroll = {r["ID"]: r["spk_id"] for r in read_csv(tmp_path / "enroll.csv")}
    tests = {r["ID"]: r["spk_id"] for r in read_csv(tmp_path / "test.csv") if "@" not in r["ID"]}
    trials = read_trials(tmp_path / "trials.txt")
    assert len(trials) == len(enroll) * len(tests) == len(set(trials))
    assert {(e, t) for e, t, _ in trials} == {(e, t) for e in enroll for t in tests}
    for e, t, label in trials:
        assert label == ("target" if enroll[e] == tests[t] else "nontarget")


def test_too_few_held_out_speakers_is_one_line_with_the_counts(corpus, tmp_path):
    with pytest.raises(PrepError, match=r"6 test, 3 dev speakers requested but only 8 of the 10 speakers"):
        prepare_folder(str(corpus), str(tmp_path), num_test_speakers=6, num_dev_speakers=3)


def test_one_class_crop_list_is_not_written(tmp_path, write_audio):
    """With no non-target trials the crop lists would hold targets only: not written; with them, written."""
    root = tmp_path / "corpus"
    for s in range(4):
        for u in range(4):
            write_audio(root / f"spk{s}" / f"u{u}.wav", 2.5 if (s, u) == (0, 3) else 1.2)
    out = tmp_path / "out"
    prepare_folder(str(root), str(out), num_test_speakers=2, enroll_utts=2, test_durations=(1.0, 2.0),
                   nontarget_ratio=0, seed=0)
    kept = {line.split()[2] for line in (out / "trials.txt").read_text().splitlines()}
    assert kept == {"target"}
    assert not (out / "trials_2s.txt").exists() and not (out / "trials_1s.txt").exists()
    assert "are all target" in (out / "prep.log").read_text()
    prepare_folder(str(root), str(out), num_test_speakers=2, enroll_utts=2, test_durations=(1.0, 2.0),
                   nontarget_ratio=1.0, seed=0)
    assert (out / "trials_1s.txt").is_file()
