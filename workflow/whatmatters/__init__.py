"""whatmatters: which training choices matter most? Evidence from many small runs."""

__version__ = "0.1.0"
