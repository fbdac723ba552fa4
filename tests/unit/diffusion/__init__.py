"""Unit tests of ddpmseg/diffusion/."""
