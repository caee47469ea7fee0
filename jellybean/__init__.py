"""JellyBean: plan and run ML inference workflows across tiered infrastructure."""

__version__ = "0.1.0"
