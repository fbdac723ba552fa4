"""Unit tests of ddpmseg/stages/<stage>.py, one test_<stage>.py each. A package (this file) so that
their module names (stages.test_download, ...) do not collide with tests/unit/test_download.py and the
like under pytest's default import mode."""
