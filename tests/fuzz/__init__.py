"""Fuzzing of every decoder of hostile input (targets.py: the targets and their contract)."""
