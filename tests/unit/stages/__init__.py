"""Unit tests of ddpmseg/stages/<stage>.py, one test_<stage>.py each, and of the script runner."""
