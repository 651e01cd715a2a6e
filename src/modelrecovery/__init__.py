"""Model recovery for representational alignment (Avitan & Golan, NeurIPS 2025) as a platform."""

__version__ = "0.1.0"
