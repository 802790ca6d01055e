"""thflax: speech-driven talking-head generation with natural head motion, in JAX/Flax.

After Wang et al., "Speech Driven Talking Head Generation via Attentional Landmarks Based
Representation" (Interspeech 2020). `thflax.generate(checkpoint, image, audio, out)` makes a video;
the rest of the package is imported on demand so that model code stays light on accelerator hosts.
"""

__version__ = "0.1.0"
__all__ = ["generate", "load_models"]


def __getattr__(name):
    if name in ("generate", "load_models"):
        from thflax import generation

        return getattr(generation, name)
    raise AttributeError(f"module 'thflax' has no attribute {name!r}")
