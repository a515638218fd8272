"""CLEF platform: session-scale clinical EEG embeddings (config, contract, models, CLI)."""

__version__ = "0.1.0"


def embed(source, checkpoint, *, device: str = "cpu"):  # noqa: ANN001, ANN201
    """Embed a session (EDF path, Recording or Tokens) or a list of them; see :func:`clef.embedding.embed`."""
    from clef.embedding import embed as _embed

    return _embed(source, checkpoint, device=device)
