"""Unit tests of ddpmseg/classifier/."""
