"""dspex.traces."""
