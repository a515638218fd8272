"""Services: archive discovery + manifest, batch embedding (local pool or Ray), the Parquet
embedding store, FAISS cohort search and the HTTP probing service.

The top layer: imports every other package of the platform, none imports it
(ARCHITECTURE.md, "Packages and layers"). Heavy
dependencies (``faiss``, ``fastapi``, ``ray``) are imported inside the modules that need
them, so ``import services`` and the ``clef`` command line stay quick.

Public entry points
-------------------
- :class:`services.store.EmbeddingStore`: read a store (``sessions``, ``embeddings``,
  ``manifest``, ``matrix``).
- :func:`services.batch.embed_archive`: embed an EDF/BDF archive into a store.
- :func:`services.index.ensure_index` / :func:`services.index.build_index`: FAISS index.
- :func:`services.search.search_similar`: cohort search with filters and per-patient
  de-duplication.
- :func:`benchmark_tasks.probes.load_probes`: task probes saved by the benchmark (scored as it scores them).
- :func:`services.api.create_app`: the FastAPI application.
"""
