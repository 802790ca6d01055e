"""Measuring: the paper's metrics (LMD, SSIM, PSNR), dlib's measures of a generated video, the evaluation
protocol and its tables.

Layer rule (tests/test_import_hygiene.py): may run inference; never imports training code.
"""
