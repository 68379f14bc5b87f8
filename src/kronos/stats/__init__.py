"""Scoring rules and significance statistics (NumPy and SciPy only)."""
