"""mlship: scikit-learn models from Git to AWS, served, monitored and reviewed."""

__version__ = "0.1.0"
