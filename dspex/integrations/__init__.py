"""dspex.integrations."""
