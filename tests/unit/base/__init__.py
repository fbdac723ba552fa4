"""Unit tests of ddpmseg/base/."""
