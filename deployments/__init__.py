"""Prefect deployments: schedules, work pools and parameters for the flows.

May import ``flows``, ``tasks`` and ``dspex``.
"""
