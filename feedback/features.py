"""Turning stored sample data into a feature matrix, by the project's schema. Pure: no ORM.

The matrix is a 2-D object array with one column per schema field in schema order, except image
fields, which become IMAGE_SIDE**2 grayscale pixel columns. Decoding images here, before the
scikit-learn pipeline, keeps the pipeline made of scikit-learn's own classes only, so that skops
can load it without trusting any custom type.
"""

import base64
import binascii
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image, UnidentifiedImageError

IMAGE_SIDE = 8
DATA_URL_PREFIX = "data:image/"


@dataclass(frozen=True)
class Columns:
    numeric: list[int]
    categorical: list[int]
    text: list[int]
    width: int


def ordered(schema: dict[str, str]) -> list[tuple[str, str]]:
    """Fields by name: the column order must not depend on how the schema was stored (jsonb
    reorders keys), or a model trained on one order would be fed another."""
    return sorted(schema.items())


def layout(schema: dict[str, str]) -> Columns:
    numeric: list[int] = []
    categorical: list[int] = []
    text: list[int] = []
    position = 0
    for _, kind in ordered(schema):
        if kind == "image":
            numeric.extend(range(position, position + IMAGE_SIDE * IMAGE_SIDE))
            position += IMAGE_SIDE * IMAGE_SIDE
            continue
        {"numeric": numeric, "categorical": categorical, "text": text}[kind].append(position)
        position += 1
    return Columns(numeric=numeric, categorical=categorical, text=text, width=position)


def image_pixels(value: Any) -> NDArray[np.float64]:
    """Grayscale pixels in [0, 1] of a ``data:image/...;base64,`` URL; NaN when not decodable
    (a plain URL, say: the annotator's browser shows it, the model does not see it)."""
    blank = np.full(IMAGE_SIDE * IMAGE_SIDE, np.nan)
    if not isinstance(value, str) or not value.startswith(DATA_URL_PREFIX) or "," not in value:
        return blank
    try:
        raw = base64.b64decode(value.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(raw)) as image:
            small = image.convert("L").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BOX)
            return np.asarray(small, dtype=np.float64).reshape(-1) / 255.0
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError):
        return blank


def matrix(rows: Sequence[dict[str, Any]], schema: dict[str, str]) -> NDArray[Any]:
    """The feature matrix of ``rows`` (sample data dicts)."""
    cols = layout(schema)
    out = np.empty((len(rows), cols.width), dtype=object)
    position = 0
    for field, kind in ordered(schema):
        values = [row.get(field) for row in rows]
        if kind == "image":
            width = IMAGE_SIDE * IMAGE_SIDE
            block = np.vstack([image_pixels(v) for v in values]) if rows else np.empty((0, width))
            out[:, position : position + width] = block
            position += width
            continue
        if kind == "numeric":
            out[:, position] = [np.nan if v is None else float(v) for v in values]
        elif kind == "categorical":
            out[:, position] = ["\x00missing" if v is None else v for v in values]
        else:
            out[:, position] = ["" if v is None else v for v in values]
        position += 1
    return out
