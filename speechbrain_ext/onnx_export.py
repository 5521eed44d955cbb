"""ONNX export of the whole embedding pipeline: Fbank -> sentence mean norm -> ECAPA.

One graph, input ``wav [B, T]`` (16 kHz, dynamic ``B`` and ``T``), output ``embedding [B, D]``, written with
``torch.onnx.export`` (TorchScript-based exporter) and checked against the PyTorch modules with onnxruntime.

Fbank's STFT cannot be exported as is: SpeechBrain calls ``torch.stft(..., return_complex=True)`` and the
exporter refuses complex tensors ("STFT does not currently support complex types"); the newer dynamo exporter
needs ``onnxscript``, which is not installed here. The graph therefore computes the same STFT as a strided
``conv1d`` with a fixed windowed-DFT kernel (:class:`ConvSTFT`)::

    frames x_t[n] = padded_wav[t * hop + n],         n < n_fft
    re[t, k] =  sum_n x_t[n] w[n] cos(2 pi k n / n_fft)
    im[t, k] = -sum_n x_t[n] w[n] sin(2 pi k n / n_fft),   k <= n_fft / 2

and reuses Fbank's own magnitude and Mel filterbank modules. Sentence mean normalisation of an unpadded
utterance is ``feats - feats.mean(time)``.
"""
import math
import os
from typing import Dict, Sequence

import numpy as np
import torch
from speechbrain.lobes.features import Fbank
from speechbrain.processing.features import STFT, spectral_magnitude

from speechbrain_ext.embeddings import EmbeddingExtractor
from speechbrain_ext.io_utils import PathLike


class ConvSTFT(torch.nn.Module):
    """SpeechBrain's ``STFT`` output ``[B, T', F, 2]`` computed with a real ``conv1d``; ``stft`` is the module
    to reproduce (``center``, ``pad_mode``, window, sizes).

    Example
    -------
    >>> from speechbrain.processing.features import STFT
    >>> ref = STFT(sample_rate=16000)
    >>> x = torch.randn(2, 4000)
    >>> bool(torch.allclose(ConvSTFT(ref)(x), ref(x), atol=1e-3))
    True
    """

    def __init__(self, stft: STFT) -> None:
        super().__init__()
        if stft.normalized_stft or not stft.onesided:
            raise ValueError("ConvSTFT supports onesided, unnormalised STFTs only")
        n_fft, win = stft.n_fft, stft.win_length
        window = torch.zeros(n_fft, dtype=torch.float64)
        offset = (n_fft - win) // 2  # torch.stft centres a shorter window
        window[offset:offset + win] = stft.window.to(torch.float64)
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64).unsqueeze(1)
        angle = 2 * math.pi * k * n / n_fft  # [F, n_fft]
        kernel = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # [2F, n_fft]
        self.register_buffer("kernel", kernel.unsqueeze(1).float())  # [2F, 1, n_fft]
        self.n_fft, self.hop, self.center, self.pad_mode = n_fft, stft.hop_length, stft.center, stft.pad_mode

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T]`` -> ``[B, T', F, 2]`` (real, imaginary)."""
        x = wav.unsqueeze(1)  # [B, 1, T]
        if self.center:
            pad = self.n_fft // 2
            x = torch.nn.functional.pad(x, (pad, pad), mode=self.pad_mode)
        spec = torch.nn.functional.conv1d(x, self.kernel, stride=self.hop)  # [B, 2F, T']
        bins = spec.shape[1] // 2
        return torch.stack([spec[:, :bins], spec[:, bins:]], dim=-1).transpose(1, 2)  # [B, T', F, 2]


class EmbeddingGraph(torch.nn.Module):
    """The exportable pipeline ``wav [B, T] -> embedding [B, D]`` for unpadded utterances.

    ``compute_features`` is an ``Fbank`` without deltas or context; ``embedding_model``: ``[B, T', M] ->
    [B, 1, D]``.
    """

    def __init__(self, compute_features: Fbank, embedding_model: torch.nn.Module) -> None:
        super().__init__()
        if not isinstance(compute_features, Fbank) or compute_features.deltas or compute_features.context:
            raise ValueError("ONNX export supports an Fbank without deltas or context")
        self.stft = ConvSTFT(compute_features.compute_STFT)
        self.fbanks = compute_features.compute_fbanks
        self.embedding_model = embedding_model

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """``wav [B, T]`` -> ``[B, D]``."""
        feats = self.fbanks(spectral_magnitude(self.stft(wav)))  # [B, T', M]
        feats = feats - feats.mean(dim=1, keepdim=True)  # sentence mean normalisation
        return self.embedding_model(feats).squeeze(1)


def export_onnx(modules: Dict[str, torch.nn.Module], path: PathLike, opset: int = 17) -> None:
    """Write the ONNX graph of ``modules``' ``compute_features`` (Fbank) + sentence norm + ``embedding_model``.

    ``modules`` are e.g. ``EmbeddingExtractor.modules`` and are put in eval mode; ``path`` is written to a
    temporary name, then renamed.
    """
    graph = EmbeddingGraph(modules["compute_features"], modules["embedding_model"]).eval()
    tmp = f"{path}.tmp"
    with torch.no_grad():
        torch.onnx.export(graph, (torch.randn(1, 32000),), tmp, dynamo=False, opset_version=opset,
                          input_names=["wav"], output_names=["embedding"],
                          dynamic_axes={"wav": {0: "batch", 1: "time"}, "embedding": {0: "batch"}})
    os.replace(tmp, path)


def onnx_parity(path: PathLike, modules: Dict[str, torch.nn.Module],
                seconds: Sequence[float] = (0.5, 1.0, 2.3, 4.0)) -> float:
    """Largest absolute difference between onnxruntime and the PyTorch modules.

    The reference is SpeechBrain's own pipeline (``compute_features`` -> ``mean_var_norm`` ->
    ``embedding_model``, as ``encode_batch`` and :class:`EmbeddingExtractor`) on random clips of the given
    lengths (seconds).
    """
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    reference = EmbeddingExtractor(modules["compute_features"], modules["mean_var_norm"], modules["embedding_model"])
    rng = np.random.default_rng(0)
    worst = 0.0
    for sec in seconds:
        wav = (0.1 * rng.standard_normal((1, int(sec * 16000)))).astype(np.float32)
        out = session.run(["embedding"], {"wav": wav})[0]
        worst = max(worst, float(np.abs(out - reference.forward(torch.from_numpy(wav)).numpy()).max()))
    return worst
