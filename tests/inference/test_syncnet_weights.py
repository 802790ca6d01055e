"""The public SyncNet's weights (thflax/inference/syncnet_weights.py): the command converts a syncnet_python
checkpoint (here one with random weights, saved by PyTorch as syncnet_python's are), the converted file
loads as a public expert that measures a clip, and bad input is one line with exit status 2."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tests.helpers import ROOT
from thflax.errors import InputError
from thflax.inference import syncnet_weights


def _run(*args):
    return subprocess.run([sys.executable, "-m", "thflax.inference.syncnet_weights", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.cli
def test_converts_a_syncnet_python_checkpoint_to_a_public_expert(tmp_path):
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[sync-reference]')")
    pytest.importorskip("python_speech_features", reason="python_speech_features is not installed "
                        "(pip install -e '.[sync-reference]')")
    from tests.models.test_syncnet import _randomise, _torch_syncnet
    from thflax.measures import lip_sync_expert

    net = _torch_syncnet(torch).eval()
    _randomise(torch, net)
    src, out = tmp_path / "syncnet_v2.model", tmp_path / "syncnet_public.msgpack"
    torch.save(net.state_dict(), src)
    r = _run("--torch", str(src), "--out", str(out))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "13.6 M parameters" in r.stdout and out.is_file()

    expert = lip_sync_expert.load_expert(str(out))
    assert expert.public and "public" in expert.name and "public" in lip_sync_expert.note(expert)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (12, 64, 64, 3), dtype=np.uint8)
    audio = (3000 * rng.normal(size=12 * 640)).astype(np.int16)
    m = expert.measure(frames, audio=audio)
    assert np.isfinite(m["lse_d"]) and m["lse_c"] >= 0
    # The same numbers as PyTorch's own net on the same inputs (the 224x224 BGR crop, psf MFCC windows).
    from thflax.models import syncnet

    v = np.asarray(syncnet.video_input(syncnet.windows(frames, 7, 5), syncnet.PUBLIC_INPUT))
    with torch.no_grad():
        tv = net.forward_lip(torch.from_numpy(np.ascontiguousarray(v.transpose(0, 4, 1, 2, 3)))).numpy()
        ta = net.forward_aud(torch.from_numpy(expert.audio_windows(12, audio=audio)[:, None])).numpy()
    np.testing.assert_allclose(expert.embed_video(frames), tv, rtol=1e-3, atol=1e-3 * np.abs(tv).max())
    torch_scores = lip_sync_expert.scores(lip_sync_expert.offset_distances(tv, ta))
    np.testing.assert_allclose([m["lse_d"], m["lse_c"]], [torch_scores["lse_d"], torch_scores["lse_c"]], rtol=1e-3)
    assert m["lse_offset"] == torch_scores["lse_offset"]


@pytest.mark.cli
def test_bad_checkpoint_is_one_line_and_exit_2(tmp_path):
    pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[sync-reference]')")
    junk = tmp_path / "junk.model"
    junk.write_bytes(b"not a checkpoint")
    out = tmp_path / "out.msgpack"
    for args in (["--torch", str(tmp_path / "missing.model"), "--out", str(out)], ["--torch", str(junk), "--out", str(out)]):
        r = _run(*args)
        assert r.returncode == 2, r.stderr[-2000:]
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:"), r.stderr
        assert not out.exists()


def test_a_file_that_is_not_converted_weights_is_refused(tmp_path):
    bad = tmp_path / "x.msgpack"
    bad.write_bytes(b"\x00\x01")
    with pytest.raises(InputError, match="not a SyncNet weights file"):
        syncnet_weights.load(str(bad))
    from flax import serialization

    bad.write_bytes(serialization.msgpack_serialize({"format": "something-else"}))
    with pytest.raises(InputError, match="not a SyncNet weights file"):
        syncnet_weights.load(str(bad))
