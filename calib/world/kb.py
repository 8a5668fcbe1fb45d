"""The world's knowledge base: one seeded set of entities, attributes and relations.

Every document of every domain, and every evaluation item, is written from
this one knowledge base, so "facts learned in pretraining" is well defined:
a fact is known to the model only if pretraining documents stated it.

Determinism: everything is drawn from numpy's PCG64 Generator in a fixed
order over sorted lists; nothing depends on Python's hash order.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # numpy loads with the first draw, so `calib --help` stays fast
    import numpy as np

# Syllables for invented names. Invented names keep facts unguessable from
# prior knowledge of English: the only way to know them is pretraining.
_ONSETS = ["b", "br", "d", "dr", "f", "g", "gr", "h", "k", "kr", "l", "m", "n", "p", "r",
           "s", "st", "t", "th", "tr", "v", "w", "z", "sh", "ch"]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou", "y"]
_CODAS = ["", "", "", "n", "r", "l", "s", "k", "m", "th", "nd", "st", "x"]

OCCUPATIONS = ["baker", "carpenter", "fisher", "weaver", "smith", "farmer", "teacher", "healer",
               "miner", "potter", "sailor", "scribe", "merchant", "brewer", "mason", "hunter",
               "tailor", "painter", "singer", "glassblower"]
COLOURS = ["red", "blue", "green", "yellow", "grey", "brown", "black", "white", "orange", "purple"]
TASTES = ["sweet", "sour", "salty", "bitter", "spicy", "smoky", "mild", "tangy"]
MATERIALS = ["iron", "bronze", "oak", "bone", "stone", "copper", "glass", "willow", "steel", "clay"]
HABITATS = ["forest", "desert", "river", "mountain", "marsh", "coast", "meadow", "cave"]
CLIMATES = ["cold", "warm", "wet", "dry", "windy", "mild", "foggy", "snowy"]
SIZES = ["tiny", "small", "medium-sized", "large", "huge"]
SOUNDS = ["hisses", "chirps", "growls", "hoots", "clicks", "howls", "whistles", "croaks"]
INGREDIENTS = ["barley", "beans", "fish", "goat milk", "honey", "lentils", "mushrooms", "plums",
               "rice", "turnips", "walnuts", "wheat", "apples", "pork", "seaweed", "cabbage"]
TRADES = ["salt", "wool", "timber", "copper", "grain", "silk", "pottery", "glass", "fish", "wine"]
# (verb phrase, object noun) pairs: what a tool is used for.
PURPOSES = [("cutting", "rope"), ("digging", "holes"), ("carving", "wood"), ("sewing", "sails"),
            ("grinding", "grain"), ("shaping", "clay"), ("catching", "fish"), ("splitting", "logs"),
            ("measuring", "fields"), ("weaving", "baskets"), ("polishing", "stones"),
            ("mixing", "paint"), ("lifting", "crates"), ("sharpening", "blades"),
            ("drying", "herbs"), ("trimming", "hedges")]
CELEBRATES = ["the first harvest", "the longest night", "the river's flood", "the founding of the city",
              "the return of the birds", "the spring thaw", "the wool market", "the new moon"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
DIETS = ["insects", "seeds", "fish", "grass", "fruit", "small birds", "roots", "leaves"]


@dataclass
class KB:
    seed: int
    regions: list[dict] = field(default_factory=list)
    cities: list[dict] = field(default_factory=list)
    people: list[dict] = field(default_factory=list)
    animals: list[dict] = field(default_factory=list)
    tools: list[dict] = field(default_factory=list)
    foods: list[dict] = field(default_factory=list)
    festivals: list[dict] = field(default_factory=list)

    def by_name(self, kind: str) -> dict[str, dict]:
        return {e["name"]: e for e in getattr(self, kind)}


def _name(rng: np.random.Generator, syllables: tuple[int, int], taken: set[str]) -> str:
    while True:
        n = int(rng.integers(syllables[0], syllables[1] + 1))
        parts = []
        for _ in range(n):
            parts.append(_ONSETS[rng.integers(len(_ONSETS))] + _VOWELS[rng.integers(len(_VOWELS))]
                         + _CODAS[rng.integers(len(_CODAS))])
        name = "".join(parts).capitalize()
        if 3 <= len(name) <= 10 and name not in taken:
            taken.add(name)
            return name


def _pick(rng: np.random.Generator, seq):
    return seq[int(rng.integers(len(seq)))]


def build_kb(seed: int = 0, n_regions: int = 8, n_cities: int = 48, n_people: int = 320,
             n_animals: int = 40, n_tools: int = 32, n_foods: int = 40, n_festivals: int = 32) -> KB:
    """Draw the knowledge base. Sizes are chosen so a ~7M-parameter model can learn
    most frequent facts but not all rare ones (tasks stay unsaturated)."""
    import numpy as np
    rng = np.random.default_rng([seed, 0x6B62])
    taken: set[str] = set()
    kb = KB(seed=seed)
    for i in range(n_regions):
        kb.regions.append({"name": _name(rng, (2, 3), taken), "climate": _pick(rng, CLIMATES),
                           "capital": None})
    rivers = [_name(rng, (2, 2), taken) for _ in range(n_cities // 3)]
    for i in range(n_cities):
        region = kb.regions[i % n_regions]
        kb.cities.append({
            "name": _name(rng, (2, 3), taken), "region": region["name"],
            "river": _pick(rng, rivers), "founded": int(rng.integers(820, 1890)),
            "population": int(rng.integers(2, 900)) * 1000, "trade": _pick(rng, TRADES),
            "food": None,
        })
    for r in kb.regions:
        r["capital"] = next(c["name"] for c in kb.cities if c["region"] == r["name"])
    for i in range(n_foods):
        kb.foods.append({
            "name": _name(rng, (2, 3), taken).lower(), "taste": _pick(rng, TASTES),
            "ingredient": _pick(rng, INGREDIENTS), "colour": _pick(rng, COLOURS),
            "origin": kb.cities[int(rng.integers(n_cities))]["name"],
        })
    for c in kb.cities:
        c["food"] = _pick(rng, kb.foods)["name"]
    for i in range(n_animals):
        kb.animals.append({
            "name": _name(rng, (2, 3), taken).lower(), "habitat": _pick(rng, HABITATS),
            "diet": _pick(rng, DIETS), "colour": _pick(rng, COLOURS), "size": _pick(rng, SIZES),
            "sound": _pick(rng, SOUNDS), "region": _pick(rng, kb.regions)["name"],
        })
    firsts = [_name(rng, (1, 2), taken) for _ in range(n_people // 2)]
    lasts = [_name(rng, (2, 3), taken) for _ in range(n_people // 2)]
    seen = set()
    while len(kb.people) < n_people:
        first, last = _pick(rng, firsts), _pick(rng, lasts)
        if (first, last) in seen:
            continue
        seen.add((first, last))
        kb.people.append({
            "name": f"{first} {last}", "first": first, "last": last,
            "pronoun": _pick(rng, ["he", "she"]),
            "city": kb.cities[int(rng.integers(n_cities))]["name"],
            "born": int(rng.integers(1890, 2005)), "occupation": _pick(rng, OCCUPATIONS),
            "food": _pick(rng, kb.foods)["name"], "animal": _pick(rng, kb.animals)["name"],
            "tool": None, "friend": None,
        })
    for i in range(n_tools):
        verb, obj = _pick(rng, PURPOSES)
        kb.tools.append({
            "name": _name(rng, (2, 2), taken).lower(), "material": _pick(rng, MATERIALS),
            "verb": verb, "object": obj, "inventor": _pick(rng, kb.people)["name"],
            "year": int(rng.integers(1200, 1990)),
        })
    for p in kb.people:
        p["tool"] = _pick(rng, kb.tools)["name"]
        p["friend"] = _pick(rng, kb.people)["name"]
        if p["friend"] == p["name"]:
            p["friend"] = kb.people[(kb.people.index(p) + 1) % n_people]["name"]
    for i in range(n_festivals):
        kb.festivals.append({
            "name": _name(rng, (2, 3), taken), "city": kb.cities[int(rng.integers(n_cities))]["name"],
            "month": _pick(rng, MONTHS), "day": int(rng.integers(1, 29)),
            "celebrates": _pick(rng, CELEBRATES),
        })
    return kb


# Zipf-like popularity: a few entities are talked about a lot, most rarely.
# This is what makes some task items hard ("rarely seen facts").
def popularity(n: int, alpha: float = 0.9) -> np.ndarray:
    import numpy as np
    w = 1.0 / np.arange(1, n + 1) ** alpha
    return w / w.sum()
