"""Unit tests of ddpmseg/diffusion/training/."""
