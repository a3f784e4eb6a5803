"""Files shipped inside the package (read with ``importlib.resources``, so they work from a wheel):

* ``demo.yaml`` — the ``qlearn demo`` grid (``qlearn ablate --config`` takes a copy of it);
* ``manifests/<source>.json`` — pinned download manifests, read by ``qlearn.data.download``;
* ``profiles/<responder>.md`` — the RPG baseline's responder profiles (written by us).
"""
from __future__ import annotations

from importlib.resources import files
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from importlib.abc import Traversable


def resource(*parts: str) -> "Traversable":
    """The packaged file or folder ``qlearn/resources/<parts...>``."""
    node = files(__name__)
    for p in parts:
        node = node / p
    return node
