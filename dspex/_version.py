"""The installed version of dspex (read by packaging from here)."""

__version__ = "0.1.0"
