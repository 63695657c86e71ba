"""Dataset preparation: fire events, scene download, dNBR, synthetic data and matching."""
