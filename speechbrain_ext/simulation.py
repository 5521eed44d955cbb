"""Simulated acoustics, numpy only: coloured noise and room impulse responses.

The one generator of both, used by the built-in corpus (``data_prep/synth_digits.py``: each utterance's room
and noise) and by the feature-enhancement sources (``speechbrain_ext.augment``: the noise and RIR files of
SpeechBrain's ``AddNoise``/``AddReverb``). No torch import, so that data preparation stays light.
"""
import numpy as np

from speechbrain_ext.manifest import SAMPLE_RATE


def fft_size(length: int) -> int:
    """Return the smallest 5-smooth integer >= ``length`` (a fast FFT size).

    Example
    -------
    >>> fft_size(1000), fft_size(1031)
    (1000, 1080)
    """
    size = length
    while True:
        rest = size
        for factor in (2, 3, 5):
            while rest % factor == 0:
                rest //= factor
        if rest == 1:
            return size
        size += 1


def coloured_noise(length: int, exponent: float, rng: np.random.Generator,
                   sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Unit-power noise with power spectrum ``P(f) ~ 1 / f**exponent`` (0 white, 1 pink, 2 brown): float64 ``[length]``.

    A complex Gaussian spectrum shaped by ``max(f, 20 Hz)**(-exponent / 2)``, inverse-transformed and scaled
    to ``mean(x**2) = 1``.

    Example
    -------
    >>> x = coloured_noise(8000, 1.0, np.random.default_rng(0))
    >>> x.shape, round(float(np.mean(x ** 2)), 6)
    ((8000,), 1.0)
    """
    size = fft_size(length)
    freqs = np.maximum(np.fft.rfftfreq(size, 1.0 / sample_rate), 20.0)
    spectrum = rng.standard_normal(len(freqs)) + 1j * rng.standard_normal(len(freqs))
    noise = np.fft.irfft(spectrum / freqs ** (exponent / 2.0), n=size)[:length]
    return noise / np.sqrt(np.mean(noise**2))


def add_noise(signal: np.ndarray, snr_db: float, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """``signal`` plus :func:`coloured_noise` at ``snr_db`` below the speech power: float64, same shape.

    The speech power is the mean square of the samples above 1 % of the peak magnitude (pauses left out)::

        y = x + n * sqrt(P_speech * 10 ** (-snr_db / 10)),   mean(n**2) = 1

    Example
    -------
    >>> x = np.sin(np.arange(16000) / 5.0)
    >>> y = add_noise(x, 20.0, 0.0, np.random.default_rng(0))
    >>> round(float(10 * np.log10(np.mean(x ** 2) / np.mean((y - x) ** 2))), 1)
    20.0
    """
    speech_power = np.mean(signal[np.abs(signal) > 0.01 * np.abs(signal).max()] ** 2)
    noise = coloured_noise(len(signal), exponent, rng)
    return signal + noise * np.sqrt(speech_power * 10.0 ** (-snr_db / 10.0))


def room_impulse_response(rt60: float, drr_db: float, rng: np.random.Generator,
                          sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A room impulse response, float64 ``[int(rt60 * sample_rate)]``: a unit direct path, then decaying noise::

        h[0] = 1;   h[n] = a * w[n] * exp(-6.9 * t_n / rt60),  t_n = n / sample_rate,  w ~ N(0, 1)

    for ``1 <= n < rt60 * sample_rate``: the tail falls by 60 dB in ``rt60`` seconds (``exp(-6.9) = 10**-3``),
    and ``a`` sets the direct-to-reverberant energy ratio ``10 * log10(h[0]**2 / sum_n h[n]**2) = drr_db``.

    Example
    -------
    >>> h = room_impulse_response(0.3, 6.0, np.random.default_rng(0))
    >>> len(h), float(h[0]), round(float(10 * np.log10(1 / np.sum(h[1:] ** 2))), 6)
    (4800, 1.0, 6.0)
    """
    t = np.arange(1, int(rt60 * sample_rate)) / sample_rate
    tail = rng.standard_normal(len(t)) * np.exp(-6.9 * t / rt60)  # -60 dB at rt60
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail**2))
    return np.concatenate([[1.0], tail])
