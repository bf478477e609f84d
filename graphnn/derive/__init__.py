"""Derivations: backprop rendered step by step."""
