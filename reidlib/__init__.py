"""reidlib: fully unsupervised person re-identification by selective contrastive learning.

A clean, vectorised, CPU-friendly rebuild of Pang, Zhai, Jiang and Liu, *Fully Unsupervised Person
Re-Identification via Selective Contrastive Learning*, ACM TOMM 2022 (arXiv 2010.07608).
"""

__version__ = "0.1.0"
