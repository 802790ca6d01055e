import numpy as np
import pytest
import skimage.data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from thflax.measures import metrics


@pytest.fixture(scope="module")
def images():
    import cv2

    a = cv2.resize(skimage.data.astronaut(), (96, 96), interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(0)
    b = np.clip(a.astype(int) + rng.normal(0, 20, a.shape), 0, 255).astype(np.uint8)
    c = cv2.GaussianBlur(a, (7, 7), 2)
    return a, b, c


def test_psnr_matches_skimage(images):
    a, b, c = images
    for x in (b, c):
        ref = peak_signal_noise_ratio(a, x, data_range=255)
        assert abs(float(metrics.psnr(x, a)) - ref) < 1e-3


def test_ssim_matches_skimage(images):
    a, b, c = images
    for x in (b, c):
        ref = structural_similarity(a, x, channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, data_range=255)
        assert abs(float(metrics.ssim(x, a)) - ref) < 1e-4
    assert abs(float(metrics.ssim(a, a)) - 1.0) < 1e-6


def test_batched_metrics(images):
    a, b, c = images
    batch = np.stack([b, c])
    s = metrics.ssim(batch, np.stack([a, a]))
    assert s.shape == (2,) and float(s[0]) == pytest.approx(float(metrics.ssim(b, a)), abs=1e-6)


def test_lmd_protocols():
    rng = np.random.default_rng(0)
    true = rng.uniform(0, 100, (5, 68, 2)).astype(np.float32)
    pred = true.copy()
    pred[:, 48:68] += np.array([3.0, 4.0], np.float32)  # mouth shifted: centred LMD ignores it
    assert float(metrics.lmd(pred, true)) < 1e-3
    assert float(metrics.lmd(pred, true, center=False)) == pytest.approx(5.0, abs=1e-4)
    pred[:, 48, 0] += 20.0  # one point off by 20 px (its centred error is 20·19/20 = 19 px)
    mean_lmd = float(metrics.lmd(pred, true))
    sum_lmd = float(metrics.lmd(pred, true, reduce="sum"))
    assert sum_lmd == pytest.approx(20 * mean_lmd, rel=1e-5)
    mask = np.array([1, 1, 0, 0, 0], np.float32)
    assert float(metrics.lmd(pred, true, mask=mask)) == pytest.approx(mean_lmd, rel=1e-5)


def test_polygon_mask():
    square = np.array([[[0.25, 0.25], [0.75, 0.25], [0.75, 0.75], [0.25, 0.75]]], np.float32)
    m = np.asarray(metrics.polygon_mask(square, 8))
    assert m.shape == (1, 8, 8) and m.sum() == 16 and m[0, 2:6, 2:6].all()


def test_laplacian_variance_matches_opencv_and_falls_with_blur():
    import cv2

    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (2, 32, 32, 3)).astype(np.float32)
    grey = [xi.mean(-1).astype(np.float64) for xi in x]
    ours = np.asarray(metrics.laplacian_variance(x))
    np.testing.assert_allclose(ours, [cv2.Laplacian(g, cv2.CV_64F)[1:-1, 1:-1].var() for g in grey], rtol=1e-4)
    mask = np.zeros((2, 32, 32, 1), np.float32)
    mask[:, 8:20, 8:20] = 1
    np.testing.assert_allclose(np.asarray(metrics.laplacian_variance(x, mask)),
                               [cv2.Laplacian(g, cv2.CV_64F)[8:20, 8:20].var() for g in grey], rtol=1e-4)
    blurred = np.stack([cv2.GaussianBlur(xi, (5, 5), 1.5) for xi in x])
    assert np.all(np.asarray(metrics.laplacian_variance(blurred)) < 0.2 * ours)


def test_masked_psnr_counts_only_the_region(images):
    a, b, _ = images
    mask = np.zeros(a.shape[:2] + (1,), np.float32)
    mask[10:30, 10:30] = 1
    want = peak_signal_noise_ratio(a[10:30, 10:30], b[10:30, 10:30], data_range=255)
    got = float(metrics.masked_psnr(a[None].astype(np.float32), b[None].astype(np.float32), mask[None])[0])
    assert abs(got - want) < 1e-3
    c = a.copy()
    c[40:] = 0  # outside the region: no effect
    assert abs(float(metrics.masked_psnr(c[None].astype(np.float32), b[None].astype(np.float32), mask[None])[0]) - want) < 1e-3
