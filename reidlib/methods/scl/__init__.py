"""Selective contrastive learning (Pang et al., ACM TOMM 2022)."""
