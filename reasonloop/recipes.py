"""Providers that travel to other processes as the recipe that builds them.

A Dask worker cannot be sent a loaded model, a Chroma client or an HTTP client. What the factory in
`reasonloop.providers` builds carries its recipe: the builder, the settings and the index version. Pickling it sends
only the recipe, and each process builds from a recipe once. API keys are not in settings, so they never travel:
a worker reads them from its own environment. Recipes hold the settings as a plain pydantic model: this module sits
below every layer, so it does not know the settings' type.
"""

from __future__ import annotations

import importlib
import threading
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

_BUILT: dict[tuple[str, str, str], Any] = {}  # per process: recipe key -> the object it built
_LOCK = threading.RLock()  # a reasoner's recipe builds its index's, which builds the embedder's


@dataclass(frozen=True)
class Recipe:
    builder: str  # "module:function" taking (settings, manifest)
    settings: BaseModel
    manifest: BaseModel | None = None  # the index version it reads

    def key(self) -> tuple[str, str, str]:
        return (self.builder, self.settings.model_dump_json(),
                self.manifest.model_dump_json() if self.manifest is not None else "")


def rebuild(recipe: Recipe) -> Any:
    """The object `recipe` builds, built once per process."""
    key = recipe.key()
    with _LOCK:
        if key not in _BUILT:
            module, name = recipe.builder.split(":")
            _BUILT[key] = getattr(importlib.import_module(module), name)(recipe.settings, recipe.manifest)
        return _BUILT[key]


class Travels:
    """Mixin: pickles as its recipe. Objects built outside the factory have none and refuse to travel."""

    _recipe: Recipe | None = None

    def with_recipe(self, recipe: Recipe) -> Any:
        object.__setattr__(self, "_recipe", recipe)  # also on frozen dataclasses and pydantic models
        return self

    def __reduce__(self) -> tuple[Any, tuple[Recipe]]:
        if self._recipe is None:
            raise TypeError(f"{type(self).__name__} holds models or clients that cannot be sent to another process; "
                            "build it with reasonloop.providers so that it travels as its recipe")
        return rebuild, (self._recipe,)
