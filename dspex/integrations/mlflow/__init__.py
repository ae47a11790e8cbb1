"""The implementation of :mod:`dspex.mlflow`, the public MLflow API; import that instead.

* ``_flavor``: the ``dspex`` flavor (``log_model``, ``save_model``, ``load_model``).
* ``_loader``: the ``python_function`` loader module named in every saved MLmodel file
  (``loader_module: dspex.integrations.mlflow._loader``); its path stays importable so that
  models saved by earlier versions keep loading.
* ``_program``: packing a program as code reference + JSON state, and rebuilding it.
* ``_registry``: registering versions and moving aliases.
* ``_tracking``: where runs are tracked, experiments, a configured ``MlflowClient``.
* ``_logging``: what an optimization run logs (its run, candidates, plots, winner), for the
  Prefect tasks in ``dspex.tasks.tracking``.

Nothing is exported here, and MLflow is imported only when one of these functions runs.
"""
