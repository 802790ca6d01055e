"""Data layer: TFDS builders (GRID, any folder of talking videos, the synthetic corpus) and tf.data.

The tf.data functions are imported lazily so that worker processes that only prepare
utterances (`input_pipeline.preprocess`) do not pay for importing TensorFlow.
"""

__all__ = ["StageData", "train_dataset", "eval_dataset", "utterances", "get_builder"]


def __getattr__(name):
    if name in __all__:
        from input_pipeline import pipeline

        return getattr(pipeline, name)
    raise AttributeError(name)
