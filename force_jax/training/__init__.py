"""Training a pruned network: mask -> trained model.

The optax wrapper that keeps pruned weights at zero, learning-rate
schedules, TFDS input pipelines, the jitted train and eval steps, checkpoints
and result files, metric writers, and the multi-process runtime. Imports the
core, never `force_jax.experiments`.
"""
