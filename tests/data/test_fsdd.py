"""FSDD audio: log-mel sequences equal an independent numpy/scipy computation, the official split
(index 0-4 test: 2700/300), archive and folder give the same data, and a CLI run with a sequence method."""
import io
import json
import tarfile

import numpy as np
import pytest
import scipy.io.wavfile
import scipy.signal
import torch

from neuroq.cli import main
from neuroq.data import load_dataset, log_mel
from neuroq.training.methods import available, method_class


def reference_log_mel(wave_int16, length, n_fft=256, hop=128, n_mels=32, sr=8000):
    """An independent computation: scipy's Hann window, reflect padding, an explicit loop over frames with
    numpy's rFFT, and each HTK-mel triangle evaluated from its three corner frequencies."""
    s = np.zeros(length)
    s[:min(length, len(wave_int16))] = wave_int16[:length] / 32768.0
    padded = np.pad(s, n_fft // 2, mode="reflect")
    win = scipy.signal.get_window("hann", n_fft)  # periodic (fftbins=True)
    frames = 1 + length // hop
    power = np.stack([np.abs(np.fft.rfft(win * padded[t * hop:t * hop + n_fft])) ** 2 for t in range(frames)])
    mel = lambda f: 2595.0 * np.log10(1.0 + f / 700.0)  # noqa: E731
    hz = lambda m: 700.0 * (10.0 ** (m / 2595.0) - 1.0)  # noqa: E731
    corners = hz(np.linspace(mel(0.0), mel(sr / 2), n_mels + 2))
    freqs = np.arange(n_fft // 2 + 1) * sr / n_fft
    fb = np.zeros((len(freqs), n_mels))
    for m in range(n_mels):
        lo, mid, hi = corners[m], corners[m + 1], corners[m + 2]
        for k, f in enumerate(freqs):
            if lo <= f <= mid:
                fb[k, m] = (f - lo) / (mid - lo)
            elif mid < f <= hi:
                fb[k, m] = (hi - f) / (hi - mid)
    return np.log(power @ fb + 1e-6)


@pytest.fixture(scope="module")
def recordings(fsdd_archive):
    archive = fsdd_archive
    with tarfile.open(archive, "r:gz") as tar:
        return archive, {m.name.split("/")[-1]: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


@pytest.fixture(scope="module")
def fsdd_raw(recordings):
    return load_dataset("fsdd?normalize=0", str(recordings[0]))


def test_spectrogram_equals_an_independent_computation(recordings, fsdd_raw):
    archive, recs = recordings
    names = sorted(recs)
    train_names = [n for n in names if int(n[:-4].split("_")[2]) > 4]
    test_names = [n for n in names if int(n[:-4].split("_")[2]) <= 4]
    length = fsdd_raw.meta["clip_samples"]
    assert length == (64 - 1) * 128
    for split, pick, i in ((fsdd_raw.test, test_names, 0), (fsdd_raw.train, train_names, 1234),
                           (fsdd_raw.train, train_names, len(train_names) - 1)):
        sr, w = scipy.io.wavfile.read(io.BytesIO(recs[pick[i]]))
        assert sr == 8000 and w.dtype == np.int16
        ref = reference_log_mel(w, length)
        x, y = split[i]
        assert x.shape == (64, 32) and y == int(pick[i][0])
        np.testing.assert_allclose(x.numpy(), ref, atol=2e-4, rtol=1e-5)
    # the longest recording (2.28 s) is cut to the clip length
    longest = max(names, key=lambda n: len(recs[n]))
    _, w = scipy.io.wavfile.read(io.BytesIO(recs[longest]))
    assert len(w) > length
    both = [log_mel(torch.from_numpy(w[:length] / 32768.0).float(), backend=b) for b in ("torch", "torchaudio")
            if b == "torch" or pytest.importorskip("torchaudio")]
    for s in both:
        np.testing.assert_allclose(s.numpy(), reference_log_mel(w, length), atol=2e-4, rtol=1e-5)


def test_official_split_and_normalisation(fsdd_raw, recordings):
    d = load_dataset("fsdd", str(recordings[0]))
    assert (d.kind, d.in_shape, d.num_classes, len(d.train), len(d.test)) == ("sequence", (64, 32), 10, 2700, 300)
    assert torch.bincount(d.y_train).tolist() == [270] * 10 and torch.bincount(d.y_test).tolist() == [30] * 10
    mean, std = d.x_train.mean(dim=(0, 1)), d.x_train.std(dim=(0, 1))
    assert mean.abs().max() < 1e-4 and (std - 1).abs().max() < 1e-4
    raw_mean, raw_std = fsdd_raw.x_train.mean(dim=(0, 1)), fsdd_raw.x_train.std(dim=(0, 1))
    torch.testing.assert_close(d.x_test, (fsdd_raw.x_test - raw_mean) / raw_std, atol=1e-4, rtol=1e-4)
    assert torch.equal(d.y_test, fsdd_raw.y_test)


def test_folder_and_archive_give_the_same_data(recordings, fsdd_raw, tmp_path):
    archive, recs = recordings
    folder = tmp_path / "free-spoken-digit-dataset-recordings"
    folder.mkdir()
    for name in sorted(recs)[:60] + sorted(recs)[-60:]:
        (folder / name).write_bytes(recs[name])
    small = load_dataset("fsdd?normalize=0&frames=20&n_mels=16", str(tmp_path))
    assert small.in_shape == (20, 16) and len(small.train) + len(small.test) == 120
    for where in (folder, tmp_path):
        again = load_dataset("fsdd?normalize=0&frames=20&n_mels=16", str(where))
        assert torch.equal(again.x_train, small.x_train)
    full = load_dataset("fsdd?normalize=0", str(archive.parent))  # the folder holding the archive
    assert torch.equal(full.x_test, fsdd_raw.x_test)


def test_errors_name_what_is_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="pass --data-dir with the FSDD recordings"):
        load_dataset("fsdd")
    with pytest.raises(FileNotFoundError, match="holds no .digit._.speaker._.index..wav"):
        load_dataset("fsdd", str(tmp_path))
    with pytest.raises(ValueError, match="too short for n_fft=256"):
        load_dataset("fsdd?frames=2", str(tmp_path))
    with pytest.raises(ValueError, match="log_mel expects waveforms"):
        log_mel(torch.zeros(2, 3, 4000))


@pytest.mark.slow
def test_cli_trains_a_sequence_method_on_fsdd(recordings, tmp_path, capsys):
    seq = [n for n in available() if "sequence" in method_class(n).kinds]
    if not seq:
        pytest.skip("no training method takes sequence data yet (Method.kinds): the FSDD loader is tested above; "
                    "the CLI run starts once a sequence method (e.g. lmu, srnn) is registered")
    name = seq[0]
    out = tmp_path / "run"
    rc = main(["train", "--method", name, "--dataset", "fsdd?frames=32", "--data-dir", str(recordings[0]),
               "--hidden", "16", "--limit-train", "100", "--limit-test", "20", "--epochs", "1", "--quiet",
               "--no-report", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    m = json.loads((out / "metrics.json").read_text())
    assert m["dataset"] == "fsdd" and m["epochs_done"] == 1
