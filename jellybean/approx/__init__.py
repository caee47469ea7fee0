"""Approximate aggregation features with a guaranteed bound, after Biathlon (Chang et al., PVLDB 2024,
arXiv 2405.11191): estimate aggregates from samples with standard errors, propagate their uncertainty
through a model with quasi-Monte Carlo, sample more where the first-order Sobol index per unit cost is
highest, and stop once the prediction stays within δ of the exact one with confidence τ.

The pieces live in small modules (``estimators``, ``propagate``, ``priority``, ``stopping``, ``loop``)
and are imported from there; this package file imports nothing, so no module depends on it.
"""
