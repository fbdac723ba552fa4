"""The pixel classifiers: the MLP, several members stacked into one computation, their settings and training."""
