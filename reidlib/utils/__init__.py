"""Plumbing every part of reidlib shares: run directories, signals, torchrun."""
