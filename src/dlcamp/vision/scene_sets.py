"""Named, versioned detection data sets drawn by the scene synthesiser, cached on disk.

| name      | classes                                                   | train / test / shift |
|-----------|-----------------------------------------------------------|----------------------|
| fruit-1   | one, "fruit" (26 photographed fruits), like the book's bananas | 1,000 / 200 / 200 |
| objects-8 | bird, mammal, fish, insect, flower, fruit, vegetable, tool | 2,000 / 400 / 400    |

All images are 128 x 128 px. Splits:

- **train**: the *train instances* of every class (each class's stamps sorted by file name;
  every 4th one, starting with the second, is held out), on the in-domain backgrounds;
- **test**: same scene settings and backgrounds, but only the *held-out instances*: the
  test measures generalisation to new objects of known classes, not memorised cut-outs;
- **shift** (covariate shift): the held-out instances plus, where Tux Paint has them, clip-art
  drawings of the same classes (another style), on other backgrounds (GIMP textures and a
  photo never used in train/test), with smaller objects, harsher lighting (darker, lower
  contrast, stronger gamma and gradient), more blur and more noise. `shift_knobs(name)` lists
  exactly what differs.

Each version pins its source files by SHA-256 (`scene_manifest.py`); a build checks them and
names the Debian package to install when one is missing. A built split is cached at
`<dlcamp cache>/scenes/<name>-v<version>-<hash>/<split>.safetensors`, the hash covering the
spec, the configs and the manifest, so a changed definition never reads a stale cache.
Rebuilding the same version gives the same bytes (tests/test_scenes.py checks it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from dlcamp.core.errors import DatasetCorrupt, DatasetNotFound, UnknownName
from dlcamp.core.registry import Registry
from dlcamp.data import scene_sources
from dlcamp.data.detection import DetectionSet
from dlcamp.data.files import cache_dir
from dlcamp.vision.scene_manifest import SHA256
from dlcamp.vision.scenes import SceneConfig, SceneObject, synthesise

SPLITS = ("train", "test", "shift")
SYNTH_VERSION = 1  # bump when scenes.py draws differently; part of every cache key


@dataclass(frozen=True)
class SceneClass:
    """One class: English and Chinese names, its photo stamps (folder + file stems) and the
    clip-art stamps used only by the shift split."""

    name: str
    name_zh: str
    folder: str  # under the Tux Paint stamps folder
    stems: str  # space-separated file stems (sub/folder/stem allowed)
    clipart: str = ""  # "folder/stem" items, shift split only

    def keys(self) -> list[str]:
        return sorted(f"tuxpaint/{self.folder}/{s}.png" for s in self.stems.split())

    def split_keys(self) -> dict[str, list[str]]:
        """train / test instance keys: every 4th sorted key from the second is held out."""
        keys = self.keys()
        test = keys[1::4]
        shift = test + [f"tuxpaint/{s}.png" for s in self.clipart.split()]
        return {"train": [k for k in keys if k not in test], "test": test, "shift": shift}


@dataclass(frozen=True)
class SceneSetSpec:
    """A named scene set: classes, split sizes, scene configs and background pools."""

    name: str
    version: int
    description: str
    classes: tuple[SceneClass, ...]
    sizes: tuple[tuple[str, int], ...]  # (split, n)
    config: SceneConfig
    shift_config: SceneConfig
    backgrounds: tuple[str, ...]
    shift_backgrounds: tuple[str, ...]
    seed: int = 0
    meta: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def class_names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def class_names_zh(self) -> list[str]:
        return [c.name_zh for c in self.classes]

    def split_size(self, split: str) -> int:
        return dict(self.sizes)[split]

    def instances(self, split: str) -> list[tuple[str, int]]:
        """(stamp key, class id) of the objects a split draws from."""
        return [(k, c) for c, cls in enumerate(self.classes) for k in cls.split_keys()[split]]

    def background_keys(self, split: str) -> tuple[str, ...]:
        return self.shift_backgrounds if split == "shift" else self.backgrounds

    def files(self) -> list[str]:
        """Every source file the set uses."""
        keys = {k for s in SPLITS for k, _ in self.instances(s)}
        return sorted(keys | set(self.backgrounds) | set(self.shift_backgrounds))


# In-domain backgrounds: MATE photos without flowers or insects (those would be unlabelled
# objects of objects-8's classes), and scikit-image's three textures.
BACKGROUNDS = tuple(f"mate/nature/{n}.jpg" for n in
                    "Aqua Blinds Dune GreenMeadow RainDrops Storm Wood".split()) + (
    "skimage/brick.png", "skimage/grass.png", "skimage/gravel.png")
# Shift backgrounds: GIMP's textures (not its 'Legacy' drawn tiles) and scikit-learn's photo.
SHIFT_BACKGROUNDS = tuple(f"gimp/{p}.pat" for p in (
    "Fabric/burlap Food/java Food/choc_swirl Water/pool Water/rain Water/ice Paper/crinklepaper "
    "Paper/paper Sky/sky Stone/Craters Stone/brick Stone/rock Stone/slate Stone/ground1 "
    "Stone/stone33 Stone/marble1 Stone/marble2 Stone/marble3 Stone/cracked Stone/pink_marble "
    "Stone/terra Stone/granite1 Stone/Moonfoot Animal/leather Plant/leaves Wood/wood1 "
    "Wood/wood2 Wood/wood3 Wood/bark Wood/parque1 Wood/pine Wood/walnut Wood/corkboard "
    "Wood/burlwood").split()) + ("sklearn/china.jpg",)

FRUIT = SceneClass(
    "fruit", "水果", "food/fruit",
    "Apricot_whole Cherry_Stella Strawberry2 apple_fuji apple_granny_smith apple_green "
    "apple_red apple_sierra_beauty apricot avocado banana cherimoya grapes kiwi lemon "
    "mandarine mango orange orange_seville pear pineapple pomegranate raspberry sliced_lime "
    "sliced_orange strawberry",
    " ".join(f"food/fruit/cartoon/{s}" for s in
             "apple banana cherries grapes lemon orange peach pear pineapple strawberry".split()))
CLASSES_8 = (
    SceneClass("bird", "鸟", "animals/birds",
               "adelaide-rosella albino_peahen blackbird chicken_profile crow crowned_crane "
               "cuckoo drake duck gander guineafowl helmeted_guineafowl hen heron_greatblue "
               "heron_greatblue_flying lark little-penguin magellanic_penguin magpie nandou "
               "ostrich owl peacock pelican penguin pigeon pink_flamingo quetzal "
               "rainbow-lorikeet rooster seagull silver-gull tucan turkey vulture",
               "animals/birds/cartoon/tux animals/birds/cartoon/pengwin"),
    SceneClass("mammal", "哺乳动物", "animals/mammals",
               "apes/chimp apes/gorilla apes/tamarin_emperor aquatic/dolphin aquatic/orca "
               "aquatic/otter aquatic/sea_lion badger bears/bear bears/european-bear "
               "bovines/bison bovines/bull bovines/cow bovines/goat bovines/mountaingoat "
               "bovines/ram bovines/sheep bovines/yak bovines/zebu camel/camel "
               "camel/dromedary cats/lion-2 cats/tiger deer/caribou deer/deer deer/wapiti "
               "dogs/dingo dogs/dog dogs/fox elephant equines/donkey equines/horse "
               "equines/zebra ferret giraffe hippopotamus pig rhino_black rodents/beaver "
               "rodents/capybara rodents/marmot rodents/mouse rodents/rabbit rodents/squirrel "
               "wildboar",
               "animals/mammals/bears/cartoon/teddy_bear animals/mammals/cats/cartoon/lion "
               "animals/mammals/hedgehog animals/mammals/echidna"),
    SceneClass("fish", "鱼", "animals/fish",
               "bluegroper butterflyfish clownfish coraltrout dolphinfish lionfish moonwrasse "
               "seahorse stripedfish"),
    SceneClass("insect", "昆虫", "animals/insects",
               "bee fly grasshopper hornet hoverfly mantis xanthia",
               " ".join(f"animals/insects/cartoon/{s}" for s in
                        "butterfly dragonfly fly ladybug ladybug-2".split())),
    SceneClass("flower", "花", "plants/flowers",
               "adeenia anemone_red anthoorium appooppanthady bolsom chemparathi daffodil "
               "flower1 flower10 flower2 flower3 flower4 flower5 flower6 flower7 flower8 "
               "flower9 iris marigold pigface red-gazania rose whitestar-petunia yellow-flower",
               "plants/flowers/plastic/chuvanna_plastic_poo"),
    replace(FRUIT, clipart=""),
    SceneClass("vegetable", "蔬菜", "food/vegetables",
               "broccoli carrot chilepepper corn eggplant garlic garlics lettuce mushroom onion "
               "pattypan_squash pepper potato pumpkin_small redlettuce tomato yam yellowpepper"),
    SceneClass("tool", "工具", "household/tools",
               "hammer mallet_metal measuring_tape paintbrush_large plyers saw spade wrench "
               "wrench_adjustable wrench_plumbers"),
)
# The covariate shift: every knob that differs from the in-domain config.
SHIFT = dict(scale=(0.22, 0.45), brightness=(-0.15, 0.03), contrast=(0.65, 0.9),
             gamma=(1.1, 1.35), gradient=0.4, blur=(0.6, 1.2), noise=(0.015, 0.04))
FRUIT_CONFIG = SceneConfig(objects=(1, 2), scale=(0.3, 0.6), rotation=15.0, border=0.15,
                           min_visible=0.6)  # easy on purpose: TinySSD's first data set
OBJECTS_CONFIG = SceneConfig(objects=(1, 3), scale=(0.28, 0.55), rotation=15.0, border=0.2)

SCENE_SETS: Registry[SceneSetSpec] = Registry("scene set", [(s.name, s) for s in (
    SceneSetSpec("fruit-1", 1, "one class, 'fruit': 1-2 photographed fruits per image "
                 "(the book's banana set, offline)", (FRUIT,),
                 (("train", 1000), ("test", 200), ("shift", 200)), FRUIT_CONFIG,
                 replace(FRUIT_CONFIG, **SHIFT), BACKGROUNDS, SHIFT_BACKGROUNDS, seed=1),
    SceneSetSpec("objects-8", 1, "eight classes of photographed objects, 1-3 per image",
                 CLASSES_8, (("train", 2000), ("test", 400), ("shift", 400)), OBJECTS_CONFIG,
                 replace(OBJECTS_CONFIG, **SHIFT), BACKGROUNDS, SHIFT_BACKGROUNDS, seed=8),
)])


def list_scene_sets() -> list[str]:
    """Names of the registered scene sets, sorted."""
    return SCENE_SETS.names()


def get_scene_set(name: str) -> SceneSetSpec:
    """The spec of `name`; UnknownName with close names otherwise."""
    return SCENE_SETS.get(name)


def manifest(spec: SceneSetSpec) -> dict[str, str]:
    """key -> pinned SHA-256 of every file the set uses."""
    missing = [k for k in spec.files() if k not in SHA256]
    if missing:
        raise DatasetCorrupt(f"scene set {spec.name}: no pinned SHA-256 for {missing[:3]} "
                             "(regenerate dlcamp/vision/scene_manifest.py).")
    return {k: SHA256[k] for k in spec.files()}


def cache_key(spec: SceneSetSpec) -> str:
    """12 hex digits over the spec, its configs, its manifest and the synthesiser version."""
    blob = json.dumps({"spec": asdict(spec) | {"meta": None}, "manifest": manifest(spec),
                       "synth": SYNTH_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cache_path(spec: SceneSetSpec, split: str) -> Path:
    return (cache_dir() / "scenes" / f"{spec.name}-v{spec.version}-{cache_key(spec)}"
            / f"{split}.safetensors")


def _check_split(spec: SceneSetSpec, split: str) -> None:
    if split not in SPLITS:
        raise UnknownName(f"scene set {spec.name!r} has no split {split!r}; choose from "
                          f"{', '.join(SPLITS)}")


def build_split(spec: SceneSetSpec, split: str, n: int | None = None) -> DetectionSet:
    """Draw one split now (no cache): checks the source files against the manifest first.

    `n` overrides the split size (tests, quick previews); the images are a prefix of the
    full split because image i depends only on (seed, split, i).
    """
    _check_split(spec, split)
    scene_sources.check_manifest(manifest(spec), f"scene set {spec.name} v{spec.version}")
    objects = [SceneObject(k, c, scene_sources.load_rgba(scene_sources.resolve(k)))
               for k, c in spec.instances(split)]
    backgrounds = [(k, scene_sources.load_rgb(scene_sources.resolve(k)))
                   for k in spec.background_keys(split)]
    config = spec.shift_config if split == "shift" else spec.config
    seed = spec.seed * 1000 + SPLITS.index(split)
    data = synthesise(config, objects, spec.split_size(split) if n is None else n, seed,
                      backgrounds=backgrounds, class_names=spec.class_names,
                      class_names_zh=spec.class_names_zh, name=spec.name, split=split)
    data.meta = {"version": spec.version, "cache_key": cache_key(spec),
                 "config": asdict(config), "seed": seed,
                 "packages": source_packages(spec)}
    return data


def load_scene_set(name: str, split: str = "train", *, n: int | None = None,
                   rebuild: bool = False) -> DetectionSet:
    """One split of a named scene set: read from the cache, else built (seconds) and cached.

    `n` (quick mode, lessons) returns the first n images only: sliced from the cache when it
    exists, else drawn without building (and caching) the whole split -- the same images,
    since image i depends only on (seed, split, i).
    Raises UnknownName (set or split), DatasetNotFound (a source package is missing: the
    message names it) or DatasetCorrupt (installed files differ from the pinned version).
    """
    spec = get_scene_set(name)
    _check_split(spec, split)
    path = cache_path(spec, split)
    if path.is_file() and not rebuild:
        try:
            data = DetectionSet.load(path)
            return data if n is None or n >= len(data) else data.select(range(n))
        except DatasetCorrupt:
            pass  # a damaged cache file is rebuilt below
    if n is not None and n < spec.split_size(split):
        return build_split(spec, split, n)
    data = build_split(spec, split)
    data.save(path)
    return data


def source_packages(spec: SceneSetSpec) -> list[str]:
    """The Debian / pip packages the set's files come from."""
    sources = sorted({k.split("/")[0] for k in spec.files()})
    return [scene_sources.SOURCES[s][1] for s in sources]


def missing_packages(spec: SceneSetSpec) -> list[str]:
    """The packages of `source_packages` whose folder is not found on this machine."""
    missing = []
    for source in sorted({k.split("/")[0] for k in spec.files()}):
        try:
            scene_sources.source_dir(source)
        except DatasetNotFound:
            missing.append(scene_sources.SOURCES[source][1])
    return missing


def shift_knobs(name: str) -> dict[str, tuple]:
    """What the shift split changes: config field -> (in-domain, shift), plus the pools."""
    spec = get_scene_set(name)
    a, b = asdict(spec.config), asdict(spec.shift_config)
    knobs = {k: (a[k], b[k]) for k in a if a[k] != b[k]}
    knobs["backgrounds"] = (len(spec.backgrounds), len(spec.shift_backgrounds))
    train = {k for k, _ in spec.instances("train")}
    shift = {k for k, _ in spec.instances("shift")}
    knobs["instances"] = (len(train), len(shift - train))
    return knobs


def scene_set_info(name: str) -> dict:
    """A JSON-able description: classes, sizes, image size, cache state, sources, knobs."""
    spec = get_scene_set(name)
    return {
        "name": spec.name, "version": spec.version, "description": spec.description,
        "classes": spec.class_names, "classes_zh": spec.class_names_zh,
        "image_size": spec.config.image_size, "sizes": dict(spec.sizes),
        "instances": {s: len(spec.instances(s)) for s in SPLITS},
        "cached": {s: cache_path(spec, s).is_file() for s in SPLITS},
        "cache_dir": str(cache_path(spec, "train").parent),
        "packages": source_packages(spec), "missing_packages": missing_packages(spec),
        "shift_knobs": {k: list(v) for k, v in shift_knobs(name).items()},
    }

