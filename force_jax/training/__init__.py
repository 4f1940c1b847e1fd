"""Training a pruned network, the application's side: data, steps and processes.

TFDS input pipelines (and which record file of a prepared dataset is damaged),
the jitted train and eval steps over a masked optimizer (`force_jax.optim`),
and the multi-process runtime. Imports the library only.
"""
