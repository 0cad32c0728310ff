"""The config schema's enums name exactly what the registries hold, so a new plugin is one module
and its test: a schema that forgot it (or kept a removed one) fails here, not in a user's run."""

from pathlib import Path

import pytest
import yaml

from cotprobe.backends import BACKENDS
from cotprobe.benchmarks import BENCHMARKS
from cotprobe.benchmarks.shapes import CATEGORIES
from cotprobe.judges import judge_kinds
from cotprobe.models import BUILDERS
from cotprobe.models.organism import RECIPES
from cotprobe.training import TRAINERS
from cotprobe.training.reward import FAITHFULNESS
from cotprobe.variants import VARIANTS

SCHEMA = Path(__file__).resolve().parents[2] / "workflow/schemas/config.schema.yaml"
WARM = "properties/models/additionalProperties/properties/build/properties/warm_start/properties"

# Training sets besides shapes' train split: the kinds whose adapters read a training dataset.
TRAINING_KINDS = {"shapes", "sat", "pixmo-count", "geometry3k"}


def enum(path: str) -> list:
    node = yaml.safe_load(SCHEMA.read_text())
    for key in path.split("/"):
        node = node[key]
    return node["enum"]


@pytest.mark.parametrize(
    "path, names",
    [
        ("properties/variants/items", VARIANTS.names()),
        ("properties/benchmarks/additionalProperties/properties/kind", BENCHMARKS.names()),
        ("properties/models/additionalProperties/properties/backend", BACKENDS.names()),
        ("properties/judges/additionalProperties/properties/kind", judge_kinds()),
        ("properties/models/additionalProperties/properties/build/properties/kind", BUILDERS.names()),
        ("properties/training/properties/runs/additionalProperties/properties/backend", TRAINERS.names()),
        (f"{WARM}/recipe", list(RECIPES)),
        (f"{WARM}/categories/items", list(CATEGORIES)),
        (
            "properties/training/properties/runs/additionalProperties/properties/reward/properties/faithfulness",
            list(FAITHFULNESS),
        ),
    ],
    ids=[
        "variants",
        "benchmarks",
        "backends",
        "judges",
        "builders",
        "trainers",
        "recipes",
        "categories",
        "faithfulness",
    ],
)
def test_schema_enum_is_the_registry(path, names):
    assert sorted(map(str, enum(path))) == sorted(map(str, names))


def test_training_data_kinds_are_registered_benchmarks():
    kinds = set(enum("properties/training/properties/data/additionalProperties/properties/kind"))
    assert kinds == TRAINING_KINDS and kinds <= set(BENCHMARKS.names())
