"""Category, Attribute and Value types and the in-memory Taxonomy with its lookups.

Pure Python: no Beam, no I/O. Loading from Shopify's dist files is in `loader.py`.

Localized category names (Shopify ships the same tree in a dozen languages) are kept as
one name tuple per locale, aligned with `categories`' order: ~130k strings for 13 locales
cost little memory and pickle compactly. The lookups over them (localized full paths and
leaf names) are built on first use and left out of the pickle, so a process that never
meets a localized string pays nothing for them.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import InitVar, dataclass, field
from functools import cached_property
from typing import Any

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
    """One version of the taxonomy with lookups by id, full path and leaf name.

    `localizations` maps a locale ("es", "pt-BR", ...) to category GID -> localized name.
    Ids and predictions stay canonical (English); localized names are another way in.
    """

    version: str
    categories: dict[str, Category]
    attributes: dict[str, Attribute]
    localizations: InitVar[Mapping[str, Mapping[str, str]] | None] = None
    _by_full_name: dict[str, Category] = field(init=False, repr=False)
    _by_leaf_name: dict[str, list[Category]] = field(init=False, repr=False)
    _values_by_id: dict[str, Value] = field(init=False, repr=False)
    # locale -> names aligned with `categories` order (None where the locale lacks one).
    _localized: dict[str, tuple[str | None, ...]] = field(init=False, repr=False)

    def __post_init__(self, localizations: Mapping[str, Mapping[str, str]] | None) -> None:
        self._by_full_name = {normalise_key(c.full_name): c for c in self.categories.values()}
        by_leaf: dict[str, list[Category]] = defaultdict(list)
        for c in self.categories.values():
            by_leaf[normalise_key(c.name)].append(c)
        self._by_leaf_name = dict(by_leaf)
        self._values_by_id = {v.id: v for a in self.attributes.values() for v in a.values}
        self._localized = {
            locale: tuple(names.get(cid) or None for cid in self.categories)
            for locale, names in sorted((localizations or {}).items())
            if locale != "en" and names
        }

    # Lazily built lookups over localized names: dropped from the pickle (cheap to rebuild,
    # and most processes never need them).
    _LAZY = ("_position", "_localized_full_index", "_localized_leaf_index", "_localized_full_names")

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._LAZY}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    def __len__(self) -> int:
        return len(self.categories)

    # -- lookups ---------------------------------------------------------------------

    def get(self, category_id: str) -> Category | None:
        """By GID (`gid://shopify/TaxonomyCategory/aa-1`) or short id (`aa-1`)."""
        if category_id in self.categories:
            return self.categories[category_id]
        return self.categories.get(f"gid://shopify/TaxonomyCategory/{category_id}")

    def by_full_name(self, full_name: str, *, localized: bool = True) -> Category | None:
        """The category with this full path: English first, then any locale's path."""
        key = normalise_key(full_name)
        found = self._by_full_name.get(key)
        if found is None and localized and self._localized:
            found = self._localized_full_index.get(key)
        return found

    def by_leaf_name(self, name: str, *, localized: bool = True) -> list[Category]:
        """Categories named `name`. English names win: only a name that is no English
        category name is looked up among the localized ones (so adding locales never makes
        an English name ambiguous); a localized name shared by several locales for one
        category counts once."""
        key = normalise_key(name)
        found = self._by_leaf_name.get(key)
        if found is None and localized and self._localized:
            found = self._localized_leaf_index.get(key)
        return list(found or ())

    # -- localized names ----------------------------------------------------------------

    @property
    def locales(self) -> tuple[str, ...]:
        """The locales with localized names, sorted; English (canonical) is not listed."""
        return tuple(self._localized)

    def localized_names(self, locale: str) -> dict[str, str]:
        """Category GID -> name in `locale`; empty for a locale the taxonomy lacks."""
        names = self._localized.get(locale)
        if names is None:
            return {}
        return {cid: n for cid, n in zip(self.categories, names) if n is not None}

    def localized_name(self, category_id: str, locale: str) -> str | None:
        names = self._localized.get(locale)
        c = self.get(category_id)
        if names is None or c is None:
            return None
        return names[self._position[c.id]]

    def localized_full_name(self, category_id: str, locale: str) -> str | None:
        """Root-first localized path joined with " > "; None for an unknown category or
        locale, or where the locale does not name the category itself. An ancestor the
        locale does not name keeps its English name."""
        names = self._localized.get(locale)
        c = self.get(category_id)
        if names is None or c is None or names[self._position[c.id]] is None:
            return None
        return PATH_SEPARATOR.join(names[self._position[a.id]] or a.name for a in self.lineage(c))

    @cached_property
    def _position(self) -> dict[str, int]:
        return {cid: i for i, cid in enumerate(self.categories)}

    @cached_property
    def _localized_full_names(self) -> dict[str, tuple[str | None, ...]]:
        """locale -> localized full paths aligned with `categories`, built parent-first."""
        cats = list(self.categories.values())
        pos = self._position
        out: dict[str, tuple[str | None, ...]] = {}
        for locale, names in self._localized.items():
            full: list[str | None] = [None] * len(cats)
            # Parents are not guaranteed to precede children in the dict, so go by level.
            for i in sorted(range(len(cats)), key=lambda k: cats[k].level):
                c = cats[i]
                own = names[i]
                if own is None:
                    continue
                parent = full[pos[c.parent_id]] if c.parent_id in pos else None
                if c.parent_id is None:
                    full[i] = own
                else:
                    prefix = parent or PATH_SEPARATOR.join(
                        names[pos[a]] or self.categories[a].name for a in reversed(c.ancestor_ids)
                    )
                    full[i] = prefix + PATH_SEPARATOR + own
            out[locale] = tuple(full)
        return out

    @cached_property
    def _localized_full_index(self) -> dict[str, Category]:
        cats = list(self.categories.values())
        index: dict[str, Category] = {}
        for full in self._localized_full_names.values():
            for c, f in zip(cats, full):
                if f is not None:
                    index.setdefault(normalise_key(f), c)
        return index

    @cached_property
    def _localized_leaf_index(self) -> dict[str, list[Category]]:
        cats = list(self.categories.values())
        index: dict[str, dict[str, Category]] = defaultdict(dict)
        for names in self._localized.values():
            for c, n in zip(cats, names):
                if n is not None:
                    index[normalise_key(n)][c.id] = c
        return {k: list(v.values()) for k, v in index.items()}

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
            "locales": len(self._localized),
        }
