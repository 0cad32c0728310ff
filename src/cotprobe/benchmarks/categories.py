"""Each source's question types mapped onto the template categories of ``variants.templates``.

A sample's ``category`` picks the caption/think wording of the asserting variants, so it must fit
both the question and the form of its options: a "which object is closer" question with object
names reads "the {text} is closer to the camera", but the same relation asked as yes/no needs the
yes/no wording. ``refine`` makes that second choice from the option texts.
"""

from __future__ import annotations

from collections.abc import Iterable

from cotprobe.benchmarks.choices import norm_text

YES_NO = frozenset({"yes", "no"})
DIRECTION_WORDS = frozenset(
    {
        "left",
        "right",
        "above",
        "below",
        "top",
        "bottom",
        "front",
        "back",
        "behind",
        "in front",
        "in front of",
        "up",
        "down",
        "middle",
        "center",
        "centre",
        "left side",
        "right side",
        "on the left",
        "on the right",
    }
)
# Categories whose wording already fits direction-word options.
_DIRECTIONAL = frozenset({"position", "direction", "viewpoint", "motion"})

THREEDSR = {
    "height_higher": "higher",
    "location_above": "position",
    "location_closer_to_camera": "closer_camera",
    "location_next_to": "position",
    "orientation_in_front_of": "position",
    "orientation_on_the_left": "position",
    "orientation_viewpoint": "viewpoint",
    "multi_object_closer_to": "closer_to",
    "multi_object_facing": "facing",
    "multi_object_viewpoint_towards_object": "viewpoint",
    "multi_object_parallel": "direction",
    "multi_object_same_direction": "direction",
}
CVBENCH = {"count": "number", "relation": "position", "depth": "closer_camera", "distance": "closer_to"}
VSTAR = {"direct_attributes": "attribute", "relative_position": "position"}
MMBENCH = {
    "image_emotion": "emotion",
    "image_scene": "scene",
    "attribute_recognition": "attribute",
    "celebrity_recognition": "attribute",
    "object_localization": "position",
    "spatial_relationship": "position",
    "physical_relation": "position",
    "ocr": "ocr",
}
# MME-RealWorld: keywords of the l2-category / category, first match wins.
MME_RW_KEYWORDS = (
    ("count", "number"),
    ("color", "attribute"),
    ("colour", "attribute"),
    ("attribute", "attribute"),
    ("orientation", "direction"),
    ("direction", "direction"),
    ("position", "position"),
    ("spatial", "position"),
    ("location", "position"),
    ("ocr", "ocr"),
    ("text", "ocr"),
)
# SAT question types (authors' vocabulary); others fall back on keywords, then generic.
SAT = {
    "action_sequence": "motion",
    "goal_aim": "direction",
    "obj_movement": "motion",
    "action_consequence": "motion",
    "perspective": "viewpoint",
    "ego_movement": "motion",
}
SAT_KEYWORDS = (
    ("count", "number"),
    ("depth", "closer_camera"),
    ("distance", "closer_to"),
    ("size", "attribute"),
    ("rel", "position"),
    ("move", "motion"),
)


def by_keywords(text: str, table: Iterable[tuple[str, str]], default: str = "generic") -> str:
    low = text.lower()
    return next((cat for word, cat in table if word in low), default)


def refine(category: str, texts: Iterable[str]) -> str:
    """Adjust ``category`` to the option form: yes/no options get ``yes_no``; bare direction
    words under an object-name category get ``position``."""
    low = {norm_text(t) for t in texts}
    if low and low <= YES_NO:
        return "yes_no"
    if low and low <= DIRECTION_WORDS and category not in _DIRECTIONAL:
        return "position"
    return category
