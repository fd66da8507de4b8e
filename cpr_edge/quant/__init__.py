"""Quantisation as the exporter does it, in PyTorch: fake-quant forward, quantisation-aware recovery."""
