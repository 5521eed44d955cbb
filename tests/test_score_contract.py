"""One scoring contract from evaluation to the door.

The same enrolment files and test files go through ``recipes/evaluate.py``
(scores files) and through ``speechbrain-ext enroll``/``verify`` on the model
that ``recipes/export.py`` made from that evaluation; the scores agree to
1e-5, for raw cosine and for AS-norm (the cohort shipped as ``cohort.pt``).
"""
import csv
import json
import math
from pathlib import Path

import pytest
import soundfile as sf

from speechbrain_ext.access.cli import main as cli
from speechbrain_ext.export import export_model, files_in
from test_export import make_tiny_run, run_script

ROOT = Path(__file__).resolve().parents[1]
ENROLLED, COHORT = ["spk0", "spk1", "spk2"], ["spk3", "spk4", "spk5"]
pytestmark = pytest.mark.usefixtures("single_thread")


def trial(enrolled: str, tested: str, corpus: Path) -> tuple:
    """``(enroll_id, test_id, test file)``: each claim hands in its own recording (no replay)."""
    u = 3 + ENROLLED.index(enrolled)
    return enrolled, f"{tested}_utt{u}", corpus / tested / f"utt{u}.wav"


def write_manifest(path: Path, rows) -> None:
    """rows: (id, wav, spk); start 0, stop the whole (joined) signal."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "duration", "wav", "start", "stop", "spk_id"])
        for utt_id, wav, spk in rows:
            samples = sum(sf.info(p).frames for p in wav.split(";"))
            writer.writerow([utt_id, samples / 16000, wav, 0, samples, spk])


@pytest.fixture(scope="module")
def evaluated(speaker_corpus, tmp_path_factory):
    """Prepared lists, a tiny run, and its evaluation with the threshold deployed on each score."""
    tmp = tmp_path_factory.mktemp("contract")
    prep = tmp / "prep"
    prep.mkdir()
    write_manifest(prep / "enroll.csv", [(spk, ";".join(str(speaker_corpus / spk / f"utt{u}.wav") for u in range(3)),
                                          spk) for spk in ENROLLED])
    trials = [trial(e, t, speaker_corpus) for e in ENROLLED for t in ENROLLED]
    write_manifest(prep / "test.csv", [(test_id, str(path), test_id.split("_")[0]) for _, test_id, path in trials])
    write_manifest(prep / "train.csv", [(f"{spk}_utt{u}", str(speaker_corpus / spk / f"utt{u}.wav"), spk)
                                        for spk in COHORT for u in range(6)])
    (prep / "trials.txt").write_text("".join(f"{e} {t} {'target' if t.startswith(e + '_') else 'nontarget'}\n"
                                             for e, t, _ in trials))
    save = make_tiny_run(tmp)
    return save, prep, trials, tmp


def evaluate_and_export(evaluated, kind: str, capsys) -> tuple:
    """``recipes/evaluate.py`` with ``--deploy_score=kind`` (only the model folder given), then export."""
    save, prep, _, tmp = evaluated
    out = tmp / f"eval_{kind}"
    status, _, err = run_script("evaluate", [ROOT / "hparams" / "eval_demo.yaml", f"--model_folder={save}",
                                             f"--prep_folder={prep}", f"--output_folder={out}",
                                             f"--cache_folder={tmp / 'cache'}", f"--deploy_score={kind}",
                                             "--bootstrap_resamples=0", "--min_target_trials=1"], capsys)
    assert status == 0, err
    threshold = json.loads((out / "threshold.json").read_text())
    assert threshold["score"] == kind
    model = export_model(None, save, tmp / f"model_{kind}", out / "threshold.json", out / "results.json")
    name = "scores.txt" if kind == "cosine" else f"scores_full+{kind}.txt"
    scores = {(e, t): float(s) for e, t, s, _ in (line.split() for line in (out / name).read_text().splitlines())}
    return model, scores, threshold


def cli_json(capsys, *argv) -> dict:
    status = cli([str(a) for a in argv] + ["--json"])
    out, err = capsys.readouterr()
    assert status in (0, 1), err
    return json.loads(out)


@pytest.mark.parametrize("kind", ["cosine", "asnorm"])
def test_cli_scores_equal_evaluation_scores(evaluated, kind, capsys, speaker_corpus):
    model, scores, threshold = evaluate_and_export(evaluated, kind, capsys)
    assert (model / "cohort.pt").is_file() == (kind == "asnorm")
    for name in files_in(model):  # evaluation's threshold.json names no path of this machine either
        assert str(evaluated[3]).encode() not in (model / name).read_bytes(), name
    db = evaluated[3] / f"door_{kind}.db"
    for spk in ENROLLED:
        cli_json(capsys, "enroll", "--model", model, "--db", db, spk,
                 *(speaker_corpus / spk / f"utt{u}.wav" for u in range(3)))
    cal = threshold["calibration"]
    a, b, c = (cal["map"][k] for k in "abc")
    assert cal["mode"] == "llr" and cal["map"]["quality"] == "duration" and a > 0
    results = json.loads((evaluated[3] / f"eval_{kind}" / "results.json").read_text())
    name = "full" if kind == "cosine" else f"full+{kind}"
    evaluation_accepts = []
    for enrolled, test_id, path in evaluated[2]:
        decision = cli_json(capsys, "verify", "--model", model, "--db", db, enrolled, path)
        assert decision["score_kind"] == kind
        assert decision["score"] == pytest.approx(scores[(enrolled, test_id)], abs=1e-5), (enrolled, test_id)
        # the door applies evaluation's map, written out here by hand from threshold.json, to 1e-6
        expected_llr = a * decision["score"] + b + c * math.log(sf.info(path).frames / 16000)
        assert decision["llr"] == pytest.approx(expected_llr, abs=1e-6)
        assert decision["accepted"] == (expected_llr >= math.log(99)) and cal["llr_threshold"] == pytest.approx(
            math.log(99))
        assert decision["accepted"] == (decision["score"] >= decision["threshold"])  # its score threshold
        llr = a * scores[(enrolled, test_id)] + b + c * math.log(sf.info(path).frames / 16000)
        evaluation_accepts.append((llr >= math.log(99), test_id.startswith(enrolled + "_")))
    # and evaluation measured the same decisions
    nontargets = [acc for acc, target in evaluation_accepts if not target]
    assert results[name]["far_deployed"] == pytest.approx(sum(nontargets) / len(nontargets))
