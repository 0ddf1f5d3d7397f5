r"""Audio: the Free Spoken Digit Dataset as log-mel spectrogram sequences (``--dataset fsdd``).

FSDD (Jakobovski et al., github.com/Jakobovski/free-spoken-digit-dataset, CC BY-SA 4.0): 3000 recordings
``{digit}_{speaker}_{index}.wav`` (6 speakers x 10 digits x 50), mono 16-bit PCM at 8 kHz.  The official
split puts ``index`` 0-4 in the test set (300 files) and 5-49 in the training set (2700).

Each recording :math:`s[n]` (int16 / 32768) is cut or zero-padded at its end to
:math:`L = (T_f - 1) \cdot hop` samples, so that every sample has ``frames`` :math:`= T_f` steps, and becomes
a log-mel spectrogram ``[T_f, n_mels]`` (:func:`log_mel`):

.. math::
    X[t, f] = \sum_{n=0}^{N-1} w[n]\, \tilde s[t \cdot hop + n]\, e^{-2\pi i f n / N}, \qquad
    M[t, m] = \sum_f H_m(f)\, |X[t, f]|^2, \qquad S[t, m] = \log(M[t, m] + 10^{-6}),

with :math:`N` = ``n_fft``, the periodic Hann window :math:`w`, :math:`\tilde s` the signal reflect-padded by
:math:`N/2` at both ends (centred frames), and :math:`H_m` the triangular filters of the HTK mel scale
:math:`mel(f) = 2595 \log_{10}(1 + f/700)` with ``n_mels + 2`` points equally spaced in mel from 0 Hz to
the Nyquist frequency (no area normalisation).  It is computed by ``torchaudio.transforms.MelSpectrogram``
when torchaudio imports, else by ``torch.stft`` with the same filters (:func:`mel_filterbank`): the same
numbers either way.  With ``normalize=True`` (default) each mel channel is then standardised with the
mean and standard deviation of the training split (over its samples and steps).

Samples are sequences (``TaskData.kind == 'sequence'``): a batch ``[N, T_f, n_mels]`` becomes the model
input ``[T_f, N, n_mels]``.  The 3000 spectrograms (3000 x 64 x 32 floats by default, 25 MB) are
computed once, in memory.  ``data_dir``: the recordings folder, its parent, or the ``.tar.gz`` archive
(or a folder holding it); nothing is downloaded.
"""
from __future__ import annotations

import importlib.util
import io
import math
import re
import tarfile
import wave
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .._validate import check_bool, check_choice, check_int
from .datasets import ArrayDataset, TaskData, register_dataset

SAMPLE_RATE = 8000
_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")
_FOLDERS = ("free-spoken-digit-dataset-recordings", "recordings")
_WHAT = "dataset 'fsdd'"
BACKENDS = ("auto", "torchaudio", "torch")


def _hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def _mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(n_freqs: int, n_mels: int, sample_rate: int = SAMPLE_RATE, f_min: float = 0.0,
                   f_max: Optional[float] = None) -> torch.Tensor:
    r"""Triangular HTK-mel filters ``[n_freqs, n_mels]`` (module docstring): filter :math:`m` rises from
    :math:`f_{m}` to :math:`f_{m+1}` and falls to :math:`f_{m+2}`, the :math:`f_k` equally spaced in mel;
    the frequency bins are :math:`k \cdot sr / N`, :math:`k = 0 .. N/2`.

    Example::

        >>> mel_filterbank(129, 32).shape
        torch.Size([129, 32])
    """
    check_int("n_freqs", n_freqs, ge=2)
    check_int("n_mels", n_mels, ge=1)
    f_max = sample_rate / 2 if f_max is None else f_max
    freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    pts = _mel_to_hz(np.linspace(_hz_to_mel(f_min), _hz_to_mel(f_max), n_mels + 2))
    diff = np.diff(pts)
    slopes = pts[None, :] - freqs[:, None]                      # [n_freqs, n_mels + 2]
    down = -slopes[:, :-2] / diff[:-1]
    up = slopes[:, 2:] / diff[1:]
    return torch.from_numpy(np.maximum(0.0, np.minimum(down, up))).float()


def log_mel(waves: torch.Tensor, sample_rate: int = SAMPLE_RATE, n_fft: int = 256, hop: int = 128,
            n_mels: int = 32, backend: str = "auto") -> torch.Tensor:
    """Log-mel spectrograms (module docstring) of waveforms ``[N, L]`` (or ``[L]``) -> ``[N, 1 + L // hop, n_mels]``.

    ``backend``: ``'torchaudio'`` (``torchaudio.transforms.MelSpectrogram``), ``'torch'`` (``torch.stft``
    and :func:`mel_filterbank`), or ``'auto'`` (torchaudio when it imports).

    Example::

        >>> log_mel(torch.zeros(2, 8064)).shape
        torch.Size([2, 64, 32])
    """
    check_choice("backend", backend, BACKENDS)
    check_int("n_fft", n_fft, ge=2)
    check_int("hop", hop, ge=1)
    check_int("n_mels", n_mels, ge=1)
    if not isinstance(waves, torch.Tensor) or waves.dim() not in (1, 2):
        raise ValueError(f"log_mel expects waveforms [N, L] or [L], got {getattr(waves, 'shape', type(waves).__name__)}")
    if waves.shape[-1] <= n_fft // 2:
        raise ValueError(f"log_mel: waveforms of {waves.shape[-1]} samples are too short for n_fft={n_fft} "
                         f"(need more than {n_fft // 2})")
    x = waves.float()
    if backend == "auto":
        backend = "torchaudio" if importlib.util.find_spec("torchaudio") is not None else "torch"
    if backend == "torchaudio":
        import torchaudio

        mel = torchaudio.transforms.MelSpectrogram(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop,
                                                   n_mels=n_mels, power=2.0, center=True, pad_mode="reflect",
                                                   norm=None, mel_scale="htk")(x)       # [..., n_mels, frames]
    else:
        spec = torch.stft(x.reshape(-1, x.shape[-1]), n_fft, hop_length=hop, window=torch.hann_window(n_fft),
                          center=True, pad_mode="reflect", return_complex=True).abs() ** 2
        fb = mel_filterbank(n_fft // 2 + 1, n_mels, sample_rate)
        mel = torch.einsum("nft,fm->nmt", spec, fb).reshape(*x.shape[:-1], n_mels, -1)
    return torch.log(mel + 1e-6).transpose(-1, -2).contiguous()


def read_wav(raw: bytes, what: str = "recording") -> np.ndarray:
    """A mono 16-bit PCM WAV file's samples as float32 in [-1, 1) (int16 / 32768); checks it is 8 kHz."""
    with wave.open(io.BytesIO(raw)) as w:
        if w.getnchannels() != 1 or w.getsampwidth() != 2:
            raise ValueError(f"{_WHAT}: {what} must be mono 16-bit PCM, got {w.getnchannels()} channel(s) of "
                             f"{8 * w.getsampwidth()} bits")
        if w.getframerate() != SAMPLE_RATE:
            raise ValueError(f"{_WHAT}: {what} is sampled at {w.getframerate()} Hz, expected {SAMPLE_RATE}")
        frames = w.readframes(w.getnframes())
    return np.frombuffer(frames, "<i2").astype(np.float32) / 32768.0


def _recordings(data_dir) -> dict:
    """``{file name: WAV bytes}`` of every ``{digit}_{speaker}_{index}.wav`` under ``data_dir`` (module docstring)."""
    if data_dir is None:
        raise FileNotFoundError(f"{_WHAT}: pass --data-dir with the FSDD recordings (the folder of "
                                "{digit}_{speaker}_{index}.wav files, its parent, or fsdd-recordings.tar.gz); "
                                "neuroq does not download FSDD")
    p = Path(data_dir).expanduser()
    if p.is_dir():
        for cand in (p,) + tuple(p / f for f in _FOLDERS):
            files = sorted(f for f in cand.glob("*.wav") if _NAME.match(f.name)) if cand.is_dir() else []
            if files:
                return {f.name: f.read_bytes() for f in files}
        archives = [a for a in sorted(p.glob("*.tar.gz")) + sorted(p.glob("*.tgz")) if "fsdd" in a.name.lower()
                    or "spoken" in a.name.lower()]
        if len(archives) != 1:
            raise FileNotFoundError(f"{_WHAT}: data_dir {str(p)!r} holds no {{digit}}_{{speaker}}_{{index}}.wav "
                                    f"recordings (nor {' or '.join(_FOLDERS)}/ with them, nor one FSDD .tar.gz)")
        p = archives[0]
    if not p.is_file():
        raise FileNotFoundError(f"{_WHAT}: data_dir {str(p)!r} does not exist")
    out = {}
    try:
        with tarfile.open(p, "r:*") as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and _NAME.match(name):
                    out[name] = tar.extractfile(m).read()
    except tarfile.TarError as e:
        raise ValueError(f"{_WHAT}: {str(p)!r} is not a readable tar archive ({e})") from None
    if not out:
        raise FileNotFoundError(f"{_WHAT}: archive {str(p)!r} holds no {{digit}}_{{speaker}}_{{index}}.wav files")
    return out


def fsdd(data_dir=None, download: bool = False, frames: int = 64, n_mels: int = 32, n_fft: int = 256,
         hop: int = 128, normalize: bool = True) -> TaskData:
    """FSDD as log-mel sequences (module docstring): a :class:`TaskData` of kind ``'sequence'``, samples
    ``[frames, n_mels]``, 10 classes, the official split (index 0-4: test).

    Args:
        data_dir: the recordings folder, its parent, or the ``.tar.gz`` (``download`` is not used: FSDD is
            not downloaded).
        frames: steps per sample :math:`T_f` (recordings cut or zero-padded to :math:`(T_f - 1) hop` samples;
            the default 64 is 1.008 s, longer than 99% of the recordings).
        n_mels, n_fft, hop: mel channels, FFT size and hop (samples at 8 kHz: 32 ms windows every 16 ms).
        normalize: standardise every mel channel with the training split's mean and std.

    Example::

        data = fsdd("fsdd-recordings.tar.gz")     # or load_dataset("fsdd?n_mels=40", "fsdd-recordings.tar.gz")
        x, y = data.train[0]                      # x: [64, 32]
    """
    check_int("frames", frames, ge=1)
    check_int("n_mels", n_mels, ge=1)
    check_int("n_fft", n_fft, ge=2)
    check_int("hop", hop, ge=1)
    check_bool("normalize", normalize)
    length = (frames - 1) * hop
    if length <= n_fft // 2:
        raise ValueError(f"{_WHAT}: frames={frames} with hop={hop} gives clips of {length} samples, too short for "
                         f"n_fft={n_fft}; give more frames")
    recs = _recordings(data_dir)
    names = sorted(recs)
    waves = torch.zeros(len(names), length)
    labels, test = [], []
    for i, name in enumerate(names):
        digit, _, index = _NAME.match(name).groups()
        s = read_wav(recs[name], name)[:length]
        waves[i, :len(s)] = torch.from_numpy(s)
        labels.append(int(digit))
        test.append(int(index) <= 4)
    x = log_mel(waves, SAMPLE_RATE, n_fft, hop, n_mels)
    y = torch.tensor(labels, dtype=torch.long)
    is_test = torch.tensor(test)
    xtr, xte = x[~is_test], x[is_test]
    meta = dict(sample_rate=SAMPLE_RATE, frames=frames, n_mels=n_mels, n_fft=n_fft, hop=hop, normalize=normalize,
                clip_samples=length, split="index 0-4 test", steps_option="frames")
    if normalize:
        mean, std = xtr.mean(dim=(0, 1)), xtr.std(dim=(0, 1)).clamp_min(1e-6)
        xtr, xte = (xtr - mean) / std, (xte - mean) / std
    if not math.isfinite(float(xtr.abs().max())):
        raise ValueError(f"{_WHAT}: the spectrograms hold non-finite values")
    return TaskData("fsdd", ArrayDataset(xtr.contiguous(), y[~is_test]), ArrayDataset(xte.contiguous(), y[is_test]),
                    10, (frames, n_mels), kind="sequence", meta=meta)


register_dataset("fsdd", fsdd)
