"""Category, Attribute and Value types and the in-memory Taxonomy with its lookups.

Pure Python: no Beam, no I/O. Loading from Shopify's dist files is in `loader.py`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property

__all__ = [
    "PATH_SEPARATOR",
    "normalise_key",
    "Value",
    "Attribute",
    "Category",
    "Taxonomy",
]

PATH_SEPARATOR = " > "


def normalise_key(text: str) -> str:
    """Case- and whitespace-insensitive key used for exact lookups."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True, slots=True)
class Value:
    id: str
    name: str
    handle: str


@dataclass(frozen=True, slots=True)
class Attribute:
    """A category attribute with its allowed values.

    An extended attribute (e.g. `band-color`) has its own handle and name but takes the
    values of its base attribute (`color`); `base_handle` names that base.
    """

    id: str
    name: str
    handle: str
    description: str
    values: tuple[Value, ...]
    extended: bool = False
    base_handle: str | None = None


@dataclass(frozen=True, slots=True)
class Category:
    id: str
    name: str
    full_name: str
    level: int
    parent_id: str | None
    # Nearest-first, as in Shopify's dist files.
    ancestor_ids: tuple[str, ...]
    children_ids: tuple[str, ...]
    attribute_handles: tuple[str, ...]

    @property
    def path(self) -> tuple[str, ...]:
        return tuple(self.full_name.split(PATH_SEPARATOR))

    @property
    def vertical(self) -> str:
        return self.path[0]

    @property
    def is_leaf(self) -> bool:
        return not self.children_ids


@dataclass
class Taxonomy:
    """One version of the taxonomy with lookups by id, full path and leaf name."""

    version: str
    categories: dict[str, Category]
    attributes: dict[str, Attribute]
    _by_full_name: dict[str, Category] = field(init=False, repr=False)
    _by_leaf_name: dict[str, list[Category]] = field(init=False, repr=False)
    _values_by_id: dict[str, Value] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_full_name = {normalise_key(c.full_name): c for c in self.categories.values()}
        by_leaf: dict[str, list[Category]] = defaultdict(list)
        for c in self.categories.values():
            by_leaf[normalise_key(c.name)].append(c)
        self._by_leaf_name = dict(by_leaf)
        self._values_by_id = {v.id: v for a in self.attributes.values() for v in a.values}

    def __len__(self) -> int:
        return len(self.categories)

    # -- lookups ---------------------------------------------------------------------

    def get(self, category_id: str) -> Category | None:
        """By GID (`gid://shopify/TaxonomyCategory/aa-1`) or short id (`aa-1`)."""
        if category_id in self.categories:
            return self.categories[category_id]
        return self.categories.get(f"gid://shopify/TaxonomyCategory/{category_id}")

    def by_full_name(self, full_name: str) -> Category | None:
        return self._by_full_name.get(normalise_key(full_name))

    def by_leaf_name(self, name: str) -> list[Category]:
        return list(self._by_leaf_name.get(normalise_key(name), ()))

    def ancestors(self, category: Category) -> list[Category]:
        """Root-first ancestors, excluding the category itself."""
        return [self.categories[a] for a in reversed(category.ancestor_ids)]

    def lineage(self, category: Category) -> list[Category]:
        """Root-first ancestors plus the category itself."""
        return [*self.ancestors(category), category]

    def children(self, category: Category) -> list[Category]:
        return [self.categories[c] for c in category.children_ids]

    def attributes_of(self, category: Category) -> list[Attribute]:
        return [self.attributes[h] for h in category.attribute_handles if h in self.attributes]

    def value(self, value_id: str) -> Value | None:
        return self._values_by_id.get(value_id)

    @cached_property
    def full_names(self) -> list[str]:
        return [c.full_name for c in self.categories.values()]

    @property
    def verticals(self) -> list[Category]:
        return [c for c in self.categories.values() if c.level == 0]

    def stats(self) -> dict[str, int | str]:
        return {
            "version": self.version,
            "categories": len(self.categories),
            "verticals": len(self.verticals),
            "leaves": sum(1 for c in self.categories.values() if c.is_leaf),
            "max_depth": max((c.level for c in self.categories.values()), default=0) + 1,
            "categories_with_attributes": sum(1 for c in self.categories.values() if c.attribute_handles),
            "attributes": len(self.attributes),
            "values": len(self._values_by_id),
        }
