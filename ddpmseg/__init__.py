"""ddpmseg: label-efficient semantic segmentation with DDPM pixel features.

The package holds all logic of the pipeline; the Snakemake scripts only call it.
Use a trained run from Python: ``ddpmseg.load_bundle(path, ddpm=None)`` (:func:`ddpmseg.use.api.load_bundle`)
returns a segmenter whose ``predict(image)`` gives labels, uncertainty and score at the image's size.

Main entry points of the pipeline:

- :func:`ddpmseg.diffusion.model.load_ddpm` loads a guided-diffusion checkpoint with its model flags.
- :func:`ddpmseg.diffusion.activations.extract_activations` runs the DDPM on a batch of images.
- :class:`ddpmseg.features.store.StoreWriter` / :class:`ddpmseg.features.store.FeatureStore` keep native-resolution
  activations in zarr; :mod:`ddpmseg.features.upsample` computes the exact (upsampled) features of any pixel.
- :func:`ddpmseg.classifier.training.train_member` trains one pixel classifier of the ensemble.
- :func:`ddpmseg.prediction.predict.predict_image` labels an image with an ensemble.
- :func:`ddpmseg.prediction.metrics.dataset_miou` computes mIoU as the paper does; :mod:`ddpmseg.report.tables` collects the tables.
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    # the API imports torch; `import ddpmseg` (the workflow's config code) must not
    if name == "load_bundle":
        from .use.api import load_bundle

        return load_bundle
    raise AttributeError(f"module 'ddpmseg' has no attribute {name!r}")
