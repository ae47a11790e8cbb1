"""dspex.optimize."""
