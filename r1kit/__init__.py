"""r1kit: build, train and serve small reasoning language models (see README.md)."""

__version__ = "0.1.0"
