"""Synthetic cohorts: H&E-like pyramidal TIFF slides read back through OpenSlide (``gigassl synth``) and feature-level
cohorts with a known label mechanism (``gigassl simulate``).
"""
