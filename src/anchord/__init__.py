"""anchord: a DNSSEC-validating recursive resolver that says why when it cannot answer."""

__version__ = "0.1.0"
