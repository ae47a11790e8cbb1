"""Prefect flows: one per optimizer, plus evaluate and the nightly promote flow.

May import ``tasks`` and ``dspex``.
"""
