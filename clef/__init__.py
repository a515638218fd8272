"""CLEF platform: session-scale clinical EEG embeddings (config, contract, models, CLI)."""

__version__ = "0.1.0"
