"""Unit tests of ddpmseg/use/."""
