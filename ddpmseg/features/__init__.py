"""Feature stores and sampling: zarr stores of native-resolution activations, exact upsampling, the RGB control's features, training pixels."""
