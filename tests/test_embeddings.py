"""Length-bucketed embedding extraction: equal to one-at-a-time, cached, enrolment modes."""
import numpy as np
import pytest
import soundfile as sf
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN
from speechbrain.processing.features import InputNormalization

from speechbrain_ext.embeddings import EmbeddingError, EmbeddingExtractor, embed_manifest, speaker_means
from speechbrain_ext.manifest import ManifestError
from speechbrain_ext.scoring import voiceprints


class NaNModel(torch.nn.Module):
    """An embedding model that returns NaN, as a broken checkpoint would."""

    def forward(self, feats, lengths=None):
        return torch.full((feats.shape[0], 1, 4), float("nan"))


class CountingModel(torch.nn.Module):
    """Wraps an embedding model and counts the utterances it embeds."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls = 0
        self.utterances = 0

    def forward(self, feats, lengths=None):
        self.calls += 1
        self.utterances += feats.shape[0]
        return self.model(feats, lengths)


@pytest.fixture
def extractor():
    torch.manual_seed(0)
    ecapa = ECAPA_TDNN(24, channels=[16, 16, 16, 16, 48], attention_channels=8, lin_neurons=16)
    for module in ecapa.modules():  # non-trivial BatchNorm statistics
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 1.5)
    return EmbeddingExtractor(Fbank(n_mels=24), InputNormalization(norm_type="sentence", std_norm=False),
                              CountingModel(ecapa), batch_size=4)


def write_manifest(path, rows):
    """rows: (id, wav, start, stop, spk)."""
    lines = ["ID,duration,wav,start,stop,spk_id"]
    lines += [f"{i},{(b - a) / 16000:.3f},{w},{a},{b},{s}" for i, w, a, b, s in rows]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def corpus(tmp_path):
    """Files of several lengths (some equal) and a test manifest over them."""
    rng = np.random.default_rng(0)
    lengths = [8000, 12000, 8000, 9600, 12000, 8000, 8000, 8000, 8000, 5000]
    paths = []
    for i, n in enumerate(lengths):
        path = tmp_path / f"u{i}.wav"
        sf.write(path, (0.1 * rng.standard_normal(n)).astype("float32"), 16000)
        paths.append(path)
    rows = [(f"u{i}", p, 0, n, f"s{i % 3}") for i, (p, n) in enumerate(zip(paths, lengths))]
    rows.append(("u0@crop", paths[1], 1000, 9000, "s1"))  # a crop of 8000 samples of a longer file
    return paths, lengths, write_manifest(tmp_path / "test.csv", rows)


def one_at_a_time(extractor, path, start, stop):
    wav = torch.from_numpy(sf.read(path, dtype="float32")[0][start:stop]).unsqueeze(0)
    return extractor.forward(wav)[0]


def test_bucketed_batches_equal_one_at_a_time(extractor, corpus):
    paths, lengths, manifest = corpus
    ids, emb = embed_manifest(manifest, extractor, "concat")
    model = extractor.modules["embedding_model"]
    assert ids[0] == "u0" and emb.shape == (11, 16)
    assert model.calls < len(ids)  # batching happened: 7 rows of 8000 samples share batches
    for row, (path, start, stop) in enumerate([(p, 0, n) for p, n in zip(paths, lengths)] + [(paths[1], 1000, 9000)]):
        single = one_at_a_time(extractor, path, start, stop)
        assert torch.cosine_similarity(emb[row], single, dim=0) > 0.9999
    # padding would have changed them: the same clip zero-padded is a different embedding
    padded = torch.nn.functional.pad(torch.from_numpy(sf.read(paths[9], dtype="float32")[0]), (0, 3000))
    assert torch.cosine_similarity(emb[9], extractor.forward(padded.unsqueeze(0))[0], dim=0) < 0.9999


def test_cache_hit_does_not_re_extract(extractor, corpus, tmp_path):
    _, _, manifest = corpus
    model = extractor.modules["embedding_model"]
    ids, first = embed_manifest(manifest, extractor, "concat", tmp_path / "cache")
    calls = model.calls
    ids2, second = embed_manifest(manifest, extractor, "concat", tmp_path / "cache")
    assert model.calls == calls and ids2 == ids and torch.equal(first, second)
    manifest.write_text(manifest.read_text().replace(",0,8000,s0", ",0,7999,s0", 1))  # content changed
    embed_manifest(manifest, extractor, "concat", tmp_path / "cache")
    assert model.calls > calls
    assert len(list((tmp_path / "cache").glob("test-*.pt"))) == 2


def unit(x):
    return x / x.norm()


def test_enrolment_average_vs_concat(extractor, corpus, tmp_path):
    """average: mean of the files' normalised embeddings (the CLI's enrolment); concat: the joined signal."""
    paths, lengths, _ = corpus
    joined = f"{paths[0]};{paths[3]}"
    manifest = write_manifest(tmp_path / "enroll.csv", [("spk-enroll", joined, 0, lengths[0] + lengths[3], "s")])
    _, avg = embed_manifest(manifest, extractor, "average")
    _, cat = embed_manifest(manifest, extractor, "concat")
    expected_avg = (unit(one_at_a_time(extractor, paths[0], 0, None))
                    + unit(one_at_a_time(extractor, paths[3], 0, None))) / 2
    audio = np.concatenate([sf.read(p, dtype="float32")[0] for p in (paths[0], paths[3])])
    expected_cat = extractor.forward(torch.from_numpy(audio).unsqueeze(0))[0]
    assert torch.allclose(avg[0], expected_avg, atol=1e-5)
    assert torch.allclose(cat[0], unit(expected_cat), atol=1e-5)
    assert not torch.allclose(avg[0], cat[0], atol=1e-3)
    # a window of the joined signal is split at the file boundary: 3000 + 4000 samples
    window = write_manifest(tmp_path / "win.csv", [("w", joined, lengths[0] - 3000, lengths[0] + 4000, "s")])
    _, win = embed_manifest(window, extractor, "average")
    expected = (unit(one_at_a_time(extractor, paths[0], lengths[0] - 3000, None))
                + unit(one_at_a_time(extractor, paths[3], 0, 4000))) / 2
    assert torch.allclose(win[0], expected, atol=1e-5)


def test_speaker_means_cohort(extractor, corpus):
    """Cohort speakers are enrolled as test speakers are: voiceprints of their first utterances."""
    _, _, manifest = corpus
    speakers, means, mean = speaker_means(manifest, extractor, max_speakers=2, utts_per_speaker=2)
    assert speakers == ["s0", "s1"] and means.shape == (2, 16) and mean.shape == (16,)
    _, utts = embed_manifest(manifest, extractor, "concat")  # u0, u3 are s0's first two; u1, u10 s1's
    assert torch.allclose(means, voiceprints(utts[[0, 3, 1, 10]], [0, 0, 1, 1]), atol=1e-6)


def test_bad_manifests(extractor, corpus, tmp_path):
    paths, _, _ = corpus
    with pytest.raises(ManifestError, match="no such manifest"):
        embed_manifest(tmp_path / "none.csv", extractor)
    past_end = write_manifest(tmp_path / "bad.csv", [("x", paths[0], 0, 99999, "s")])
    with pytest.raises(ValueError, match="expected 99999"):
        embed_manifest(past_end, extractor)
    joined = write_manifest(tmp_path / "joined.csv", [("y", f"{paths[0]};{paths[9]}", 20000, 30000, "s")])
    with pytest.raises(EmbeddingError, match=r"row 'y': its window \[20000, 30000\) is past the end of"):
        embed_manifest(joined, extractor)
    nan_model = EmbeddingExtractor(extractor.modules["compute_features"], extractor.modules["mean_var_norm"],
                                   NaNModel())
    ok = write_manifest(tmp_path / "ok.csv", [("x", paths[0], 0, 8000, "s")])
    with pytest.raises(EmbeddingError, match="embedding of 'x' has NaN"):
        embed_manifest(ok, nan_model)
