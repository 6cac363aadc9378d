"""Tooling beside the product: benchmarks, bare baselines and the README renderer (never shipped,
never imported by quant_lib, components or pipelines)."""
