"""PinSage as a library (Ying et al., KDD 2018): no orchestration imports.

Sub-packages, in pipeline order: ``data`` (inputs, formats, contracts, synthetic data), ``graph``
(CSR graph, random-walk kernels), ``features`` (TF Transform), ``model`` (layers, batches, loss,
training, user head, export), ``inference`` (layer-wise embeddings), ``evaluation`` (metrics,
baselines, plots), ``serving`` (index versions and queries), ``spark`` (session and Spark plans).
The top level holds what every stage shares: ``config``, ``io``, ``progress``, ``metric_keys``.
"""
