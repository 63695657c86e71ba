"""firedpy-nrt: burned-area mapping from SAR change and optical dNBR layers."""

__version__ = "0.1.0"
