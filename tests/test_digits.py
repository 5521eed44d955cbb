"""Digit strings: normalisation, transcripts in the manifests, the tokenizer, the CTC recipe, export and scoring."""
import csv
import re
import sys

import pytest
import torch

from speechbrain_ext.digits import digit_errors, digit_metrics, load_recognizer, normalise_digits
from speechbrain_ext.manifest import read_manifest

from recipe_utils import ROOT, run

sys.path.insert(0, str(ROOT / "recipes"))

# a tiny conv encoder: seconds per epoch on the tone corpus
TINY_DIGITS = ["--enc_channels=16", "--n_mels=20", "--batch_size=4",
               "--wav_augment=null", "--feat_augment=null", "--generate_augment_sources=False",
               "--noise_csv=null", "--rir_csv=null", "--lr_warmup_epochs=0", "--lr=0.01", "--test_ratio=0.34",
               "--dev_ratio=0"]


@pytest.mark.parametrize("text, digits", [
    ("0123456789", "0123456789"), ("零一二三四五六七八九", "0123456789"), ("幺三八", "138"), ("〇七", "07"),
    (" 1 2\t3 \n", "123"), ("１２３", "123"), ("三 4 五", "345"),
    ("", None), ("   ", None), ("12a", None), ("hello", None), ("1-2", None), ("十", None), ("两", None)])
def test_normalise_digits(text, digits):
    assert normalise_digits(text) == digits


def test_digit_errors_and_metrics():
    assert digit_errors("123456", "123456") == 0
    assert digit_errors("123456", "132456") == 2   # a swap is two substitutions
    assert digit_errors("", "42") == 2 and digit_errors("42", "") == 2
    m = digit_metrics(["1234", "5678", "90", "11"], ["1234", "5670", "", "11"], ["a", "a", "b", "c"],
                      num_resamples=200)
    assert m["der"] == pytest.approx(3 / 12) and m["string_accuracy"] == pytest.approx(0.5)
    assert m["der_ci"][0] <= m["der"] <= m["der_ci"][1] and m["der_ci"][0] < m["der_ci"][1]
    assert 0 <= m["string_accuracy_ci"][0] <= 0.5 <= m["string_accuracy_ci"][1] <= 1


def prepared(digit_corpus, tmp_path):
    from data_prep.shal_prepare import prepare_shal

    prepare_shal(str(digit_corpus), str(tmp_path / "prep"), seed=1, num_test_speakers=2, enroll_utts=2,
                 test_durations=(0.5,), all_pairs=True, num_workers=1)
    return tmp_path / "prep"


def transcript_of(digit_corpus):
    """``{absolute wav: digits}`` as the fixture wrote them (the ``.txt`` file included, "hello" left out)."""
    found = {}
    for line in (digit_corpus / "transcripts.tsv").read_text(encoding="utf-8").splitlines():
        rel, text = line.split("\t")
        found[str((digit_corpus / rel).resolve())] = normalise_digits(text)
    found[str((digit_corpus / "spk0" / "utt1.wav").resolve())] = normalise_digits(
        (digit_corpus / "spk0" / "utt1.txt").read_text(encoding="utf-8"))
    return {k: v for k, v in found.items() if v}


def test_transcripts_in_the_manifests(digit_corpus, tmp_path):
    prep = prepared(digit_corpus, tmp_path)
    truth = transcript_of(digit_corpus)
    assert len(truth) == 35  # 36 files, one "hello"
    hello = str((digit_corpus / "spk1" / "utt2.wav").resolve())
    for name in ("train.csv", "valid.csv", "enroll.csv", "test.csv"):
        for row in read_manifest(prep / name):
            if "@" in row.id:  # a crop: what it says is not known
                assert row.wrd == ""
            elif hello in row.files:  # the row is kept for the speakers, without digits
                assert row.wrd == ""
            else:  # a whole file, or files joined in order: their digits concatenated
                assert row.wrd == "".join(truth[f] for f in row.files) and row.wrd
    assert any(len(row.files) > 1 and row.wrd for row in read_manifest(prep / "train.csv"))
    log = (prep / "prep.log").read_text(encoding="utf-8")
    assert "SKIP not_digits (recogniser training only)" in log and "hello" in log
    assert "1 transcripts are not digit strings" in log


def test_corpus_without_transcripts_prepares_as_before(speaker_corpus, tmp_path):
    from data_prep.shal_prepare import prepare_shal

    prepare_shal(str(speaker_corpus), str(tmp_path), seed=1, num_test_speakers=2, num_workers=1)
    with open(tmp_path / "train.csv", newline="") as f:
        assert next(csv.reader(f)) == ["ID", "duration", "wav", "start", "stop", "spk_id"]
    assert all(row.wrd == "" for row in read_manifest(tmp_path / "test.csv"))


def test_tokenizer_trained_and_reloaded(digit_corpus, tmp_path):
    from speechbrain_ext.brains.digits import tokenizer_file, train_tokenizer

    prep = prepared(digit_corpus, tmp_path)
    sp = train_tokenizer(prep / "train.csv", tmp_path / "tok", 11).sp
    model = tokenizer_file(tmp_path / "tok", 11)
    assert sp.vocab_size() == 11 and sp.id_to_piece(0) == "<unk>"
    assert sorted(sp.id_to_piece(i) for i in range(1, 11)) == list("0123456789")
    stamp = model.stat().st_mtime_ns
    again = train_tokenizer(prep / "train.csv", tmp_path / "tok", 11).sp  # a resumed run: loaded, not retrained
    assert model.stat().st_mtime_ns == stamp
    for row in read_manifest(prep / "train.csv"):
        if row.wrd:
            ids = again.encode_as_ids(row.wrd)
            assert len(ids) == len(row.wrd) and 0 not in ids and again.decode_ids(ids) == row.wrd


def test_recogniser_yaml_without_transcripts_is_one_line_naming_the_manifest(speaker_corpus, tmp_path):
    cmd = [sys.executable, str(ROOT / "recipes" / "train.py"), str(ROOT / "hparams" / "digits_ctc_demo.yaml"),
           f"--data_folder={speaker_corpus}", f"--output_folder={tmp_path}", *TINY_DIGITS]
    done = run(cmd)
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path))}/manifests/train\.csv: no row has a digit transcript "
                        r"\(wrd column\).*", last), done.stderr[-2000:]
    assert "Traceback" not in done.stderr


def test_ctc_loss_falls_and_the_export_loads_in_encoder_asr(digit_corpus, tmp_path):
    import train
    from speechbrain.inference.ASR import EncoderASR
    from speechbrain.utils.fetching import FetchConfig

    from speechbrain_ext.export import export_digits

    brain = train.main([str(ROOT / "hparams" / "digits_ctc_demo.yaml"), f"--data_folder={digit_corpus}",
                        f"--output_folder={tmp_path / 'run'}", "--number_of_epochs=3", "--select_checkpoint=last",
                        *TINY_DIGITS])  # last: the exported checkpoint is the state the modules end in
    log = (tmp_path / "run" / "train_log.txt").read_text()
    losses = [float(m) for m in re.findall(r"train loss: ([0-9.e+-]+)", log)]
    assert len(losses) == 3 and losses[0] > losses[1] > losses[2], losses

    folder = export_digits(tmp_path / "run" / "save", tmp_path / "model" / "digits")
    asr = EncoderASR.from_hparams(source=str(folder), savedir=str(tmp_path / "savedir"),
                                  fetch_config=FetchConfig(allow_network=False, overwrite=True))
    recognizer = load_recognizer(tmp_path / "model")
    assert load_recognizer(tmp_path / "run") is None  # no digits/ there
    rows = [r for r in read_manifest(tmp_path / "run" / "manifests" / "test.csv") if "@" not in r.id][:4]
    modules = brain.modules
    modules.eval()
    for row in rows:
        text = asr.transcribe_file(row.wav)
        assert isinstance(text, str) and re.fullmatch(r"[0-9]*", text)
        assert recognizer.transcribe_file(row.wav) == text
        # the exported model decodes exactly as the trained modules do
        from speechbrain_ext.audio import read_file
        wav = torch.from_numpy(read_file(row.wav))[None]
        with torch.no_grad():
            feats = modules.mean_var_norm(modules.compute_features(wav), torch.ones(1))
            log_probs = brain.hparams.log_softmax(modules.ctc_lin(modules.enc(feats)))
        ids = brain.hparams.decoding_function(log_probs, torch.ones(1))[0]
        assert brain.hparams.tokenizer.sp.decode_ids(ids) == text
