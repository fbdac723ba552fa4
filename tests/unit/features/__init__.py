"""Unit tests of ddpmseg/features/."""
