"""Tiled inference over whole rasters: tiling, stitching, outputs and evaluation."""
