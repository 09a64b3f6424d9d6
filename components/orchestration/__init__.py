"""Front ends over the stages: atomic, fingerprinted stage execution, the local runner, the
Kubeflow pipeline, the TFJob launcher and a local Airflow."""
