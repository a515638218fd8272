"""Schemas of the embedding store's Parquet tables (``STORE/<table>/part-*.parquet``).

``manifest`` (an append-only log: one row per file per attempt; the latest row of a
``(path, model_id)`` is its current state, :meth:`EmbeddingStore.manifest` returns it)

=================  ==============  ====================================================
column             type            meaning
=================  ==============  ====================================================
``path``           str             file path relative to the archive root (posix)
``sha256``         str             SHA-256 of the file's bytes (null when unreadable)
``size``           int64           file size in bytes
``status``         str             ``done`` or ``failed``
``error_kind``     str             machine-readable reason (``not_edf``, ``truncated``
                                   ...); for ``done``: null, or ``same_content`` when
                                   another path with the same bytes was embedded
``error``          str             one-line message (what was expected, what was found)
``seconds``        float64         wall time spent on the file in this attempt
``updated``        datetime[μs]    UTC time of the attempt
``model_id``       str             model the attempt was for (16 hex digits)
``mtime_ns``       int64           file modification time (skips re-hashing unchanged
                                   files on re-runs)
=================  ==============  ====================================================

``sessions`` (one row per distinct file content, model-independent, free of PHI)

=================  ==============  ====================================================
``session_id``     str             the archive's session id: ``sessions.csv``'s id for
                                   the path when the archive has one, else the file
                                   stem (the relative path without suffix when two
                                   files share a stem); with ``--anonymous-ids`` its
                                   salted hash, and ``path`` (here and in the
                                   manifest) the salted hash of the path
``source_sha256``  str             SHA-256 of the file's bytes
``path``           str             path relative to the archive root
``format``         str             ``EDF``, ``EDF+C``, ``EDF+D``, ``BDF`` ...
``duration_s``     float64         nominal duration from the header
``n_windows``      int32           1280 s windows embedded
``sex``            str             ``M``, ``F`` or null (from the de-identified header)
``age_years``      float64         age at recording, 90 means 90 or older; null if unknown
``patient_hash``   str             salted hash (16 hex) of the patient id from
                                   ``sessions.csv`` or FHIR, else the header's; null
                                   when unknown or a placeholder (``0``, ``X``,
                                   ``No_Name`` ...): such a session is its own patient
``site``           str             ``sessions.csv``'s site, else the ``site_level``-th
                                   directory of the path when configured, else null
``setting``        str             ``sessions.csv``'s care setting (routine, EMU, ICU), or null
``reference``      str             reference scheme the channel labels name, as recorded:
                                   ``REF``, ``LE``, ``AVG``, ``MAST``, ``EAR``, ``CZ``,
                                   ``bipolar``, ``unknown`` or ``mixed``; null in parts
                                   written before the column existed
=================  ==============  ====================================================

``embeddings`` (one row per (file content, model))

=================  ==================  ================================================
``session_id``     str                 as in ``sessions``
``source_sha256``  str
``model_id``       str                 first 16 hex digits of the checkpoint's weights hash
``vector``         list<float32>       session embedding
``window_vectors`` list<list<float32>> per-window embeddings (n_windows × dim)
``n_windows``      int32
=================  ==================  ================================================

Never stored: names, birthdates, MRNs or patient ids, recording dates, technicians or
equipment (the header's raw fields never leave the reader).
"""

from __future__ import annotations

import polars as pl

#: Version of the store layout, written to ``store.json``.
STORE_SCHEMA = "clef.store/1"

TABLES = ("manifest", "sessions", "embeddings")

MANIFEST_SCHEMA: dict[str, pl.DataType] = {
    "path": pl.String(), "sha256": pl.String(), "size": pl.Int64(), "status": pl.String(),
    "error_kind": pl.String(), "error": pl.String(), "seconds": pl.Float64(),
    "updated": pl.Datetime("us", "UTC"), "model_id": pl.String(), "mtime_ns": pl.Int64(),
}

SESSIONS_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(), "source_sha256": pl.String(), "path": pl.String(), "format": pl.String(),
    "duration_s": pl.Float64(), "n_windows": pl.Int32(), "sex": pl.String(), "age_years": pl.Float64(),
    "patient_hash": pl.String(), "site": pl.String(), "setting": pl.String(), "reference": pl.String(),
}

EMBEDDINGS_SCHEMA: dict[str, pl.DataType] = {
    "session_id": pl.String(), "source_sha256": pl.String(), "model_id": pl.String(),
    "vector": pl.List(pl.Float32()), "window_vectors": pl.List(pl.List(pl.Float32())), "n_windows": pl.Int32(),
}

SCHEMAS: dict[str, dict[str, pl.DataType]] = {
    "manifest": MANIFEST_SCHEMA, "sessions": SESSIONS_SCHEMA, "embeddings": EMBEDDINGS_SCHEMA,
}

#: Manifest statuses.
DONE, FAILED = "done", "failed"

#: Session metadata that may leave the store in API responses (no path, no patient hash).
PUBLIC_SESSION_FIELDS = ("session_id", "site", "setting", "sex", "age_years", "duration_s", "n_windows", "reference")
