"""Unit tests of ddpmseg/report/."""
