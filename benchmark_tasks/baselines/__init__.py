"""Baselines the benchmark compares against (same sessions, their own windows)."""
