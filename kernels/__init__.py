"""Numba micro-kernels: pure functions over arrays, one module per op family.

Nothing here imports from the engine: kernels know nothing of graphs.
"""
