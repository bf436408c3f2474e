"""dlcamp: a hands-on deep-learning bootcamp that runs offline on a laptop CPU."""

__version__ = "0.1.0"
