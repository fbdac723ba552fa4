"""Unit tests of ddpmseg/prediction/."""
