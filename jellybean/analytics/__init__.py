"""Approximate traffic analytics over stored tracks (issue 16, part 3): a DuckDB store of vehicle
observations, its loaders and a history generator, the congestion query's features (exact in SQL,
approximate on DuckDB samples) and the query itself, Biathlon's loop on SQL samples.

The pieces live in small modules (``store``, ``generate``, ``load``, ``features``, ``model``,
``query``) and are imported from there; this package file imports nothing.
"""
