"""Data: downloads and archives, the demo, reading images and masks, preprocessing, datasets and training-time augmentation."""
