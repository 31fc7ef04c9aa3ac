"""Evaluating slide embeddings (Sec. 4.2-4.3): labels, splits, the linear probe and its solver, the baselines
(AverageMIL, DeepMIL), paired comparisons, label-free diagnostics, the TCGA protocol.
"""
