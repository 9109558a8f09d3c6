"""Word lists the task families draw from.

Order matters: generators pick by position from a seeded RNG, so reordering, adding or
removing a word changes the generated dataset.
"""

from __future__ import annotations


def _words(text: str) -> list[str]:
    """The whitespace-separated words of `text`, in order (keeps long lists short to read)."""
    return text.split()


NAMES = _words(
    """
    Ava Ben Chloe Dev Elena Farid Grace Hugo Iris Jonah Kira Liam Maya Nico Omar Priya Quinn
    Rosa Sam Tara Umar Vera Wes Yuki Zane
    """
)

# (container, containers, item kinds that fit it)
CONTAINERS = [
    ("box", "boxes", ["pens", "pencils", "crayons", "markers"]),
    ("crate", "crates", ["apples", "oranges", "lemons", "pears"]),
    ("bag", "bags", ["marbles", "buttons", "beads", "candies"]),
    ("pack", "packs", ["cards", "stickers", "batteries", "napkins"]),
    ("carton", "cartons", ["eggs", "juice bottles", "yogurts"]),
    ("shelf", "shelves", ["books", "plates", "jars"]),
    ("tray", "trays", ["cookies", "muffins", "cupcakes"]),
    ("basket", "baskets", ["tomatoes", "plums", "potatoes"]),
]

# Two lengths, so string problems can grow harder with the word length.
SHORT_WORDS = _words(
    """
    cat dog sun map cup pen box key hat owl fox bus jam net log ink arm bee cow egg fig gem
    hen ice jet kit lid mud nut oak pig rug sky toy van web yak zip tree bird fish lamp door
    rain snow wind moon star rock sand leaf milk bread apple grape lemon melon peach chair
    table clock plant river cloud storm stone brick glass paper pencil water light night
    horse sheep tiger zebra camel eagle shark whale mouse otter panda koala llama robin
    crane train plane truck wagon piano flute drum harp song note book page word code data
    disk file loop node tick wave beam coin gold iron salt rice corn bean soup cake pie tea
    jar bowl fork knife spoon plate sock shoe coat scarf glove ring bell kite ball game card
    dice path road hill lake pond farm barn shed nest hive seed root stem bark pine palm
    rose lily
    """
)

LONG_WORDS = _words(
    """
    planet garden window bridge castle rocket basket candle dragon forest guitar hammer
    island jacket kitten ladder magnet needle orange pepper rabbit saddle tunnel violin
    walnut yellow anchor button carpet dinner engine falcon ginger harbor insect jungle
    kettle lizard marble number oyster pillow quartz ribbon silver turtle valley wizard
    blanket captain diamond elephant feather giraffe harvest journey kingdom lantern machine
    network octopus penguin rainbow sandwich teacher uniform volcano weather alphabet
    balloon chimney dolphin eclipse fountain gravity horizon library mountain notebook
    painting question science treasure umbrella vitamin whistle backpack calendar dinosaur
    envelope firework hedgehog keyboard lemonade magazine necklace pancake pineapple
    sunflower triangle universe waterfall strawberry butterfly telescope chocolate adventure
    crocodile lighthouse snowflake blueberry pyramid compass glacier meadow tornado avocado
    cucumber spinach biscuit popcorn printer monitor battery cabinet cushion mirror
    """
)

# (singular, plural) of made-up nouns, so syllogisms cannot be answered from world knowledge.
NONSENSE = [
    ("wug", "wugs"),
    ("dax", "daxes"),
    ("blicket", "blickets"),
    ("fep", "feps"),
    ("zorb", "zorbs"),
    ("glim", "glims"),
    ("tove", "toves"),
    ("snark", "snarks"),
    ("vorp", "vorps"),
    ("quib", "quibs"),
    ("mip", "mips"),
    ("tulver", "tulvers"),
    ("krell", "krells"),
    ("yorn", "yorns"),
    ("plim", "plims"),
    ("dreb", "drebs"),
]

MONTHS = _words(
    """
    January February March April May June July August September October November December
    """
)

# Things with a price, for the percentage family.
GOODS = _words(
    """
    jacket lamp bicycle backpack chair kettle watch tent blender helmet camera desk guitar
    printer sofa scooter
    """
)
