"""Plumbing every part of reidlib shares.

- :mod:`reidlib.utils.runs`: run directories, written atomically;
- :mod:`reidlib.utils.interrupts`: SIGINT / SIGTERM save a checkpoint, then stop;
- :mod:`reidlib.utils.distributed`: torchrun's process context and collectives;
- :mod:`reidlib.utils.torch_env`: threads, determinism, device and seeds.
"""
