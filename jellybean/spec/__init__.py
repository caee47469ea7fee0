"""Typed models of every YAML file, loaded and validated with path-precise errors."""
