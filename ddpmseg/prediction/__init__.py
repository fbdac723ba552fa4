"""Prediction: the ensemble's vote and uncertainty at native resolution, test-time augmentation, scores and label pictures."""
