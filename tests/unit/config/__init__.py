"""Unit tests of ddpmseg/config/."""
