"""qlearn: querier-aware LLM personalization (arXiv 2412.11736), as a course and a small library.

Modules, in the order data flows through them: ``qlearn.data`` (transcripts -> dialogue windows),
``qlearn.cluster`` (query clusters), ``qlearn.collate`` (turn template -> batches), ``qlearn.model``
(the dual-tower model), ``qlearn.contrastive`` (the querier-contrastive loss), ``qlearn.train``
(with ``qlearn.trainer``, ``qlearn.probe`` and ``qlearn.checkpoints``), ``qlearn.evaluate``,
``qlearn.viz``. ``qlearn.assets`` loads models offline.
"""
__version__ = "0.1.0"

# The one place that names the repository (Colab badges and install cells are generated from it).
GITHUB_SLUG = "qlearn-course/qlearn"
