"""User-facing errors."""


class DdpmsegError(Exception):
    """Bad input or settings. The message is one line that names the file or setting and what is wrong."""
