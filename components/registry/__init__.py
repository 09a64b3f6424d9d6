"""MLflow: tracking, model versions and aliases, and the registered pyfunc model."""
