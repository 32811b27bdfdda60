"""Helpers that write tiny VOC-layout folders for the data tests.

(A uniquely named module: ``from conftest import ...`` would find another folder's conftest.)
"""

from pathlib import Path

import numpy as np
from PIL import Image

#: The real data shared beside the repository checkout (absent in a fresh clone).
SHARED_DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def object_xml(name, box, difficult=None, truncated=None):
    """One <object> element; ``box`` is (xmin, ymin, xmax, ymax) as VOC writes it."""
    tags = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
    extra = ""
    if difficult is not None:
        extra += f"<difficult>{difficult}</difficult>"
    if truncated is not None:
        extra += f"<truncated>{truncated}</truncated>"
    return f"<object><name>{name}</name>{extra}<bndbox>{tags}</bndbox></object>"


def annotation_xml(image_id, size, objects, filename=None):
    size_xml = (
        ""
        if size is None
        else (f"<size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>")
    )
    return (
        f"<annotation><folder>X</folder><filename>{filename or image_id + '.jpg'}</filename>"
        f"{size_xml}{''.join(objects)}</annotation>"
    )


class VOCFolder:
    """A VOC-layout folder under construction: ``add`` images, ``split`` files."""

    def __init__(self, root: Path):
        self.root = Path(root)
        for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    def add(
        self,
        image_id,
        objects,
        size=(40, 30),
        xml_size="same",
        mode="RGB",
        seed=0,
        xml=None,
        ext=".jpg",
    ):
        """Write a random image of ``size`` (W, H) and its annotation (or raw ``xml``)."""
        w, h = size
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        img = Image.fromarray(pixels).convert(mode)
        img.save(self.root / "JPEGImages" / f"{image_id}{ext}", quality=95)
        if xml is None:
            xml = annotation_xml(
                image_id,
                size if xml_size == "same" else xml_size,
                objects,
                filename=f"{image_id}{ext}",
            )
        (self.root / "Annotations" / f"{image_id}.xml").write_text(xml)
        return self

    def split(self, name, ids):
        (self.root / "ImageSets" / "Main" / f"{name}.txt").write_text(
            "".join(f"{i}\n" for i in ids)
        )
        return self

    def image_path(self, image_id, ext=".jpg"):
        return self.root / "JPEGImages" / f"{image_id}{ext}"
