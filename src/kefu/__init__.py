"""kefu: turn a small open LLM into a shop's customer-service assistant."""

__version__ = "0.1.0"
