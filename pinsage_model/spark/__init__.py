"""Spark: the session every Spark stage uses, its class-data-sharing archive, and the Spark plans
of the sampler and of layer-wise inference (paper 3.4, Figure 3)."""
