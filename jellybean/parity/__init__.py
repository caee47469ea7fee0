"""Coded redundancy (ParM): parity models, their coders and coding groups."""
