"""The pipeline around the library: ``stages`` (one thin module per stage), ``orchestration``
(stage execution and the front ends), ``commands`` (the ``pinsage`` subcommands), ``registry``
(MLflow), plus the command line (``cli``) and logging (``logs``)."""
