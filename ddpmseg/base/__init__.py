"""Shared by every layer: one-line errors, atomic file writes, progress bars."""
