"""Replay: the CityFlow-layout reader (`cityflow`), the synthetic scene writer (`scene`), and later the
sink collector, metrics and report."""
