"""Per-topic word lists from which item titles, descriptions and tags are generated."""

from __future__ import annotations

TOPICS: dict[str, tuple[str, ...]] = {
    "sports": (
        "football",
        "league",
        "goal",
        "stadium",
        "coach",
        "match",
        "striker",
        "tennis",
        "marathon",
        "trophy",
        "season",
        "referee",
    ),
    "cooking": (
        "recipe",
        "pasta",
        "oven",
        "spice",
        "garlic",
        "bake",
        "kitchen",
        "sauce",
        "dessert",
        "chef",
        "flavour",
        "noodle",
    ),
    "space": (
        "galaxy",
        "rocket",
        "orbit",
        "planet",
        "astronaut",
        "nebula",
        "telescope",
        "comet",
        "lunar",
        "satellite",
        "cosmos",
        "launch",
    ),
    "music": (
        "guitar",
        "album",
        "concert",
        "melody",
        "drummer",
        "jazz",
        "symphony",
        "vinyl",
        "chorus",
        "band",
        "rhythm",
        "piano",
    ),
    "gardening": (
        "tulip",
        "compost",
        "seedling",
        "greenhouse",
        "pruning",
        "orchard",
        "soil",
        "hedge",
        "bloom",
        "watering",
        "shrub",
        "harvest",
    ),
    "finance": (
        "stock",
        "dividend",
        "portfolio",
        "inflation",
        "bond",
        "budget",
        "mortgage",
        "investor",
        "savings",
        "market",
        "interest",
        "pension",
    ),
    "travel": (
        "passport",
        "beach",
        "itinerary",
        "hostel",
        "airline",
        "island",
        "backpack",
        "cruise",
        "museum",
        "luggage",
        "journey",
        "resort",
    ),
    "gaming": (
        "console",
        "quest",
        "multiplayer",
        "joystick",
        "level",
        "dungeon",
        "esports",
        "controller",
        "pixel",
        "speedrun",
        "boss",
        "arcade",
    ),
    "fashion": (
        "runway",
        "denim",
        "sneaker",
        "couture",
        "fabric",
        "jacket",
        "boutique",
        "silk",
        "stylist",
        "vintage",
        "handbag",
        "tailor",
    ),
    "history": (
        "empire",
        "castle",
        "medieval",
        "dynasty",
        "archive",
        "pharaoh",
        "revolution",
        "knight",
        "treaty",
        "ancient",
        "manuscript",
        "monarch",
    ),
    "pets": (
        "puppy",
        "kitten",
        "leash",
        "aquarium",
        "veterinarian",
        "parrot",
        "grooming",
        "hamster",
        "kennel",
        "whisker",
        "tortoise",
        "litter",
    ),
    "cars": (
        "engine",
        "sedan",
        "horsepower",
        "gearbox",
        "convertible",
        "turbo",
        "dashboard",
        "tyre",
        "roadster",
        "mechanic",
        "hybrid",
        "rally",
    ),
}

ADJECTIVES: tuple[str, ...] = (
    "essential",
    "complete",
    "little",
    "modern",
    "secret",
    "ultimate",
    "simple",
    "great",
    "hidden",
    "practical",
    "wild",
    "quiet",
)
# Styles cut across topics and show only in an item's words (never in its category or tags):
# the part of a catalog that only a model reading the text can see.
STYLES: dict[str, tuple[str, ...]] = {
    "retro": ("retro", "antique", "nostalgic", "old-fashioned", "classic", "heirloom"),
    "minimalist": ("minimalist", "clean", "understated", "sleek", "bare", "pared-back"),
    "luxury": ("luxury", "premium", "lavish", "exclusive", "opulent", "deluxe"),
    "playful": ("playful", "funny", "cheerful", "whimsical", "colourful", "silly"),
    "eco": ("sustainable", "organic", "green", "recycled", "natural", "eco-friendly"),
    "dark": ("dark", "gritty", "grim", "moody", "brooding", "sinister"),
    "technical": ("technical", "advanced", "precise", "engineered", "scientific", "expert"),
    "cosy": ("cosy", "warm", "gentle", "homely", "soft", "comforting"),
}

FILLER: tuple[str, ...] = ("a", "guide", "to", "the", "with", "and", "for", "everyday", "new", "of", "about", "how")

_SYLLABLES = ("ka", "lo", "mi", "ren", "tas", "vo", "zu", "pel", "dor", "fin", "gra", "shu")


def topic_vocab(n_topics: int) -> list[tuple[str, tuple[str, ...]]]:
    """``n_topics`` (name, words) pairs: the built-in topics first, then made-up ones."""
    out = list(TOPICS.items())[:n_topics]
    k = 0
    while len(out) < n_topics:
        k += 1
        words = tuple(
            _SYLLABLES[(k + i) % 12] + _SYLLABLES[(k * 7 + i * 5) % 12] + _SYLLABLES[(k * 3 + i) % 12]
            for i in range(12)
        )
        out.append((f"topic{len(out) + 1}", words))
    return out
