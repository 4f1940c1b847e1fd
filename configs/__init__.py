"""Experiment configs: each file's get_config() returns an ml_collections ConfigDict.

A package, so that one config builds on another with a plain import
(`from configs import default`). The commands load a config by path
(`--config=configs/x.py`) and make the folder holding `configs/` importable
first (`force_jax.commands.cli`).
"""
