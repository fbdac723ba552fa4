"""Unit tests, one test_<module>.py per module of ddpmseg, in folders mirroring its subpackages."""
