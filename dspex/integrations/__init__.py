"""Integrations with the tools dspex runs on.

* :mod:`dspex.integrations.mlflow` (alias :mod:`dspex.mlflow`): the ``dspex`` MLflow model
  flavor, tracking configuration and model registry helpers.

Nothing here imports a third-party integration until one of its functions is called.
"""
