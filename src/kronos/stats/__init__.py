"""Scoring rules, significance statistics and the GARCH(1,1)-t model (NumPy and SciPy; the GARCH fit uses the
optional ``arch`` package)."""
