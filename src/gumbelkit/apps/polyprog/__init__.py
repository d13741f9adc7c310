"""Small estimator benchmarks with known answers: ReinMax's polynomial programming, Gumbel-Rao's
quadratic program on the simplex, and exact-gradient statistics (``gumbelkit estimators ...``)."""
