"""User-facing errors and warnings: one line each, naming the file or setting."""

import sys


class DdpmsegError(Exception):
    """Bad input or settings. The message is one line that names the file or setting and what is wrong."""


def warn(message: str) -> None:
    """One line on stderr, which the workflow keeps in the rule's log."""
    print(f"ddpmseg warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """One line on stderr about what a job decided (kept in the rule's log)."""
    print(f"ddpmseg note: {message}", file=sys.stderr, flush=True)
