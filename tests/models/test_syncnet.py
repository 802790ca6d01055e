"""SyncNet (thflax/models/syncnet.py): shapes, the input crop, and the converter from the public PyTorch
checkpoint's layout checked layer by layer against a PyTorch copy of syncnet_python's `SyncNetModel.S`
with random weights (needs the `sync-reference` extra: skipped, with the reason, without PyTorch)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from thflax.errors import InputError
from thflax.models import syncnet


def test_public_layout_shapes_and_parameter_count():
    model = syncnet.SyncNet()
    v = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((2, 13, 20)), jnp.zeros((2, 5, 224, 224, 3))))
    assert v["params"]["netcnnlip"]["conv5"]["kernel"].shape == (6, 6, 256, 512)  # the public (1, 6, 6) conv
    assert v["params"]["netcnnaud"]["conv5"]["kernel"].shape == (5, 4, 256, 512)  # and its (5, 4) one
    assert v["params"]["netcnnlip"]["conv0"]["kernel"].shape == (7, 7, 15, 96)  # 5 frames x 3 colours
    # syncnet_v2.model holds 13.6 M parameters (52 MB of float32).
    assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(v["params"])) == 13_631_616
    assert syncnet.lip_feature_size(224, 224, stem_pool=True) == (6, 6)


def test_small_expert_embeds_independent_batches():
    model = syncnet.SyncNet((8, 16, 16, 16, 16, 32), (8, 16, 16, 16, 16, 32), 32, 24, stem_pool=False,
                            video_norm="group")
    v = model.init(jax.random.key(0), jnp.zeros((1, 13, 20)), jnp.zeros((1, 5, 48, 64, 3)))
    a, f = model.apply(v, jnp.ones((3, 13, 20)), jnp.ones((2, 5, 48, 64, 3)))
    assert a.shape == (3, 24) and f.shape == (2, 24)
    # GroupNorm on the video side: no statistics there, and a window's embedding does not depend on the
    # others in its batch; BatchNorm (the audio side) keeps its running statistics.
    assert "netcnnlip" not in v["batch_stats"] and "netcnnaud" in v["batch_stats"]
    x = jax.random.normal(jax.random.key(1), (4, 5, 48, 64, 3))
    alone = model.apply(v, x[:1], train=True, mutable=["batch_stats"], method=syncnet.SyncNet.embed_video)[0]
    together = model.apply(v, x, train=True, mutable=["batch_stats"], method=syncnet.SyncNet.embed_video)[0]
    np.testing.assert_allclose(alone[0], together[0], rtol=1e-4, atol=1e-5)
    assert syncnet.lip_feature_size(48, 64, stem_pool=False) == (2, 3)
    with pytest.raises(InputError, match="too small"):
        syncnet.lip_feature_size(48, 64, stem_pool=True)


def test_video_input_crops_the_region_and_scales():
    frames = np.zeros((2, 64, 64, 3), np.uint8)
    frames[:, 32:, :, 0] = 255  # the lower half red
    spec = syncnet.InputSpec(region=(0.0, 0.5, 1.0, 1.0), size=(32, 64))
    x = np.asarray(syncnet.video_input(frames, spec))
    assert x.shape == (2, 32, 64, 3)
    np.testing.assert_allclose(x[..., 0], 1.0)  # all red, in [-1, 1]
    np.testing.assert_allclose(x[..., 1:], -1.0)
    bgr = np.asarray(syncnet.video_input(frames, syncnet.InputSpec((0.0, 0.5, 1.0, 1.0), (32, 64), bgr=True,
                                                                   unit=False)))
    np.testing.assert_allclose(bgr[..., 2], 255.0)  # red is the last channel in BGR, 0..255
    # A region past the crop's bottom repeats the last row (the public framing reaches below our crop).
    past = np.asarray(syncnet.video_input(frames, syncnet.InputSpec((0.0, 0.5, 1.0, 1.25), (48, 64))))
    np.testing.assert_allclose(past[..., 0], 1.0)


# ---- the converter against PyTorch ----------------------------------------------------------------------


def _torch_syncnet(torch):
    """syncnet_python's SyncNetModel.S (the public network), layer for layer."""
    nn = torch.nn

    class S(nn.Module):
        def __init__(self):
            super().__init__()
            self.netcnnaud = nn.Sequential(
                nn.Conv2d(1, 64, (3, 3), (1, 1), (1, 1)), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d((1, 1), (1, 1)),
                nn.Conv2d(64, 192, (3, 3), (1, 1), (1, 1)), nn.BatchNorm2d(192), nn.ReLU(), nn.MaxPool2d((3, 3), (1, 2)),
                nn.Conv2d(192, 384, (3, 3), padding=(1, 1)), nn.BatchNorm2d(384), nn.ReLU(),
                nn.Conv2d(384, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(),
                nn.Conv2d(256, 256, (3, 3), padding=(1, 1)), nn.BatchNorm2d(256), nn.ReLU(),
                nn.MaxPool2d((3, 3), (2, 2)),
                nn.Conv2d(256, 512, (5, 4), padding=(0, 0)), nn.BatchNorm2d(512), nn.ReLU())
            self.netfcaud = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
            self.netfclip = nn.Sequential(nn.Linear(512, 512), nn.BatchNorm1d(512), nn.ReLU(), nn.Linear(512, 1024))
            self.netcnnlip = nn.Sequential(
                nn.Conv3d(3, 96, (5, 7, 7), (1, 2, 2), 0), nn.BatchNorm3d(96), nn.ReLU(),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                nn.Conv3d(96, 256, (1, 5, 5), (1, 2, 2), (0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)),
                nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(),
                nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(),
                nn.Conv3d(256, 256, (1, 3, 3), padding=(0, 1, 1)), nn.BatchNorm3d(256), nn.ReLU(),
                nn.MaxPool3d((1, 3, 3), (1, 2, 2)),
                nn.Conv3d(256, 512, (1, 6, 6), padding=0), nn.BatchNorm3d(512), nn.ReLU())

        def forward_aud(self, x):
            mid = self.netcnnaud(x)
            return self.netfcaud(mid.view((mid.size()[0], -1)))

        def forward_lip(self, x):
            mid = self.netcnnlip(x)
            return self.netfclip(mid.view((mid.size()[0], -1)))

    return S()


def _randomise(torch, net) -> None:
    """Random weights and BatchNorm statistics (the defaults, 1/0/0/1, would hide a swapped scale or mean)."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d, torch.nn.BatchNorm3d)):
                n = m.num_features
                m.weight.copy_(0.5 + torch.rand(n, generator=g))
                m.bias.copy_(0.2 * torch.randn(n, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            elif isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Linear)):
                m.bias.copy_(0.05 * torch.randn(m.bias.shape, generator=g))


def _torch_outputs(torch, net, mfcc: np.ndarray, frames: np.ndarray) -> dict[tuple[str, str], np.ndarray]:
    """Every convolution's, BatchNorm's and Linear's output, channels last: {(tower, our layer name): array}."""
    names = {**{i: f"conv{n}" for i, n in syncnet.TORCH_CONV.items()}, **{i: f"bn{n}" for i, n in syncnet.TORCH_BN.items()}}
    fc_names = {**syncnet.TORCH_FC, **syncnet.TORCH_FC_BN}
    out = {}

    def hook(tower, name):
        def record(module, inputs, output):
            y = output.detach().numpy()
            if y.ndim == 5:  # [N, C, 1, H, W] -> [N, H, W, C]
                y = y[:, :, 0].transpose(0, 2, 3, 1)
            elif y.ndim == 4:
                y = y.transpose(0, 2, 3, 1)
            out[(tower, name)] = y
        return record

    for tower in ("netcnnaud", "netcnnlip"):
        for i, name in names.items():
            getattr(net, tower)[i].register_forward_hook(hook(tower, name))
    for tower in ("netfcaud", "netfclip"):
        for i, name in fc_names.items():
            getattr(net, tower)[i].register_forward_hook(hook(tower, name))
    with torch.no_grad():
        out["audio"] = net.forward_aud(torch.from_numpy(mfcc[:, None])).numpy()  # [N, 1, 13, 20]
        # [N, 5, H, W, 3] -> torch's [N, 3, 5, H, W]
        out["video"] = net.forward_lip(torch.from_numpy(np.ascontiguousarray(frames.transpose(0, 4, 1, 2, 3)))).numpy()
    return out


def test_converter_matches_pytorch_layer_by_layer():
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[sync-reference]')")
    torch.manual_seed(0)
    net = _torch_syncnet(torch).eval()
    _randomise(torch, net)
    rng = np.random.default_rng(0)
    mfcc = rng.normal(size=(2, 13, 20)).astype(np.float32) * 10.0  # python_speech_features' scale
    frames = rng.uniform(0, 255, size=(2, 5, 224, 224, 3)).astype(np.float32)  # BGR 0..255, as the public net reads
    want = _torch_outputs(torch, net, mfcc, frames)

    model, variables = syncnet.from_torch(net.state_dict())
    assert model == syncnet.SyncNet()  # the public layout, read from the shapes
    (audio, video), inter = model.apply(variables, jnp.asarray(mfcc), jnp.asarray(frames),
                                        capture_intermediates=True, mutable=["intermediates"])
    inter = inter["intermediates"]
    checked = 0
    layers = {k: v for k, v in want.items() if isinstance(k, tuple)}
    for (tower, name), expected in layers.items():
        got = np.asarray(inter[tower][name]["__call__"][0])
        scale = max(float(np.abs(expected).max()), 1e-6)
        err = float(np.abs(got - expected).max()) / scale
        assert got.shape == expected.shape, (tower, name, got.shape, expected.shape)
        assert err < 1e-4, f"{tower}/{name}: relative error {err:.2e}"
        checked += 1
    assert checked == 2 * (6 + 6) + 2 * 3  # every conv and BatchNorm of both CNNs, both heads' three layers
    np.testing.assert_allclose(np.asarray(audio), want["audio"], rtol=1e-4, atol=1e-4 * np.abs(want["audio"]).max())
    np.testing.assert_allclose(np.asarray(video), want["video"], rtol=1e-4, atol=1e-4 * np.abs(want["video"]).max())


def test_converter_refuses_other_state_dicts():
    with pytest.raises(InputError, match="no netcnnlip.0.weight"):
        syncnet.from_torch({"fc.weight": np.zeros((2, 2))})
    torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install -e '.[sync-reference]')")
    state = _torch_syncnet(torch).state_dict()
    extra = {**state, "netfclip.9.weight": torch.zeros(2)}
    with pytest.raises(InputError, match="unexpected netfclip.9.weight"):
        syncnet.from_torch(extra)
    missing = {k: v for k, v in state.items() if k != "netcnnaud.5.running_var"}
    with pytest.raises(InputError, match="no netcnnaud.5.running_var"):
        syncnet.from_torch(missing)
