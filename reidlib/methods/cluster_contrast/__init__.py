"""Cluster Contrast (Dai et al., ACCV 2022), the clustering family."""
