"""Figures and tables of the architecture-search application (matplotlib's object API)."""
