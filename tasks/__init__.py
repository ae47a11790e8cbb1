"""Prefect tasks: thin wrappers around dspex steps (cache policy, retries, limits).

Filled by the optimization pipeline; see DESIGN.md. May import ``dspex`` only.
"""
