"""Unit tests of ddpmseg/data/."""
