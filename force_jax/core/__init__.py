"""The pure core: params -> prune -> mask, in JAX over pytrees.

Masks and their global top-k, keep-fraction schedules, the score of every
method (`methods` is the table of what each method is), scoring losses, the
pruning program (`pruning`: pool or stream), the sanity ablations, mask
analysis and device shardings. Nothing here reads a config, a file or a
dataset, and it imports nothing of force_jax but `errors`.
"""
