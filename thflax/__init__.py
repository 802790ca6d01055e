"""thflax: speech-driven talking-head generation with natural head motion, in JAX/Flax.

After Wang et al., "Speech Driven Talking Head Generation via Attentional Landmarks Based
Representation" (Interspeech 2020). `thflax.generate(checkpoint, image, audio, out)` makes a video (checkpoint: a training workdir, the
bundle `thflax.export(workdir, out)` writes, or None for the model that ships in the package);
the rest of the package is imported on demand so that model code stays light on accelerator hosts.
"""

__version__ = "0.1.0"
__all__ = ["export", "generate", "load_models"]


def __getattr__(name):
    if name == "generate":
        from thflax.inference import generation

        return generation.generate
    if name == "load_models":
        from thflax.inference import networks

        return networks.load_models
    if name == "export":
        from thflax.inference import params

        return params.export
    raise AttributeError(f"module 'thflax' has no attribute {name!r}")
