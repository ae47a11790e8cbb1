"""Integrations with the tools dspex runs on.

* :mod:`dspex.integrations.mlflow`: the implementation of :mod:`dspex.mlflow` (the ``dspex``
  MLflow model flavor, tracking configuration and model registry helpers), which is the
  public path to import.

Nothing here imports a third-party integration until one of its functions is called.
"""
