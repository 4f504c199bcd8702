"""Importing labels made elsewhere into index masks plus a class map.

Three sources people arrive with:

* **COCO** instance/stuff JSON: polygons and RLE (compressed or not) rasterised with
  pycocotools, COCO's own implementation, so masks match the official tools pixel for pixel;
* **LabelMe** JSON files, one per image: polygon, rectangle, circle, line and point shapes;
* **colour-coded masks** (RGB PNGs, one colour per class) with a palette.

Every problem is collected with the file and the entry it concerns (annotation id, shape
index, colour) instead of being dropped silently; :class:`LabelImport` carries them, and
the CLI reports them and exits non-zero. Masks are written atomically, background is 0,
pixels no annotation covers in a colour mask with unknown colours become the ignore index.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..classmap import ClassMap
from ..errors import InputFileError
from .datasets import Pair, write_manifest
from .images import IMAGE_SUFFIXES, read_image_array, write_image


@dataclass
class LabelImport:
    class_map: ClassMap
    pairs: list[Pair] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def write(self, output: Path) -> dict[str, Path]:
        """Write ``classes.json`` and ``manifest.csv`` (masks are already written)."""
        from ..io import write_json

        output.mkdir(parents=True, exist_ok=True)
        paths = {"classes": write_json(output / "classes.json", self.class_map.to_dict())}
        if self.pairs:
            paths["manifest"] = write_manifest(output / "manifest.csv", self.pairs)
        if self.problems:
            paths["problems"] = write_json(output / "problems.json", self.problems)
        return paths


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputFileError(f"{path}: file not found") from None
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{path}: not valid JSON ({exc})") from None


def import_coco(annotations: str | Path, images: str | Path, output: str | Path, *, class_map: ClassMap | None = None) -> LabelImport:
    """Rasterise a COCO JSON into ``output/masks/<image stem>.png`` (categories -> classes 1..K)."""
    from pycocotools import mask as cocomask

    annotations, images, output = Path(annotations), Path(images), Path(output)
    data = _load_json(annotations)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) or not isinstance(data.get("annotations"), list):
        raise InputFileError(f"{annotations}: not a COCO file (needs 'images', 'annotations' and 'categories' lists)")
    cats = sorted(data.get("categories", []), key=lambda c: c.get("id", 0))
    if class_map is None:
        names = ["background"] + [str(c["name"]) for c in cats]
        class_map = ClassMap(tuple(names), name=annotations.stem)
    cat_to_class: dict[int, int] = {}
    result = LabelImport(class_map)
    for c in cats:
        try:
            cat_to_class[int(c["id"])] = class_map.index(str(c["name"]))
        except Exception:
            result.problems.append(f"{annotations}: category {c.get('id')!r} ({c.get('name')!r}) is not in the class map")
    by_image: dict[int, list[tuple[int, dict]]] = {}
    image_ids = {im.get("id") for im in data["images"]}
    for i, ann in enumerate(data["annotations"]):
        where = f"{annotations}: annotation {ann.get('id', f'#{i}')}"
        if ann.get("image_id") not in image_ids:
            result.problems.append(f"{where}: image_id {ann.get('image_id')!r} is not in 'images'")
        elif ann.get("category_id") not in cat_to_class:
            result.problems.append(f"{where}: unknown category_id {ann.get('category_id')!r}")
        else:
            by_image.setdefault(ann["image_id"], []).append((i, ann))
    for im in data["images"]:
        where = f"{annotations}: image {im.get('id')!r}"
        try:
            h, w, file_name = int(im["height"]), int(im["width"]), str(im["file_name"])
        except (KeyError, TypeError, ValueError):
            result.problems.append(f"{where}: needs file_name, height and width")
            continue
        image_path = images / file_name
        if not image_path.exists():
            result.problems.append(f"{where}: image file {image_path} not found")
            continue
        mask = np.zeros((h, w), np.uint8 if class_map.num_classes < 256 else np.uint16)
        # paint larger regions first so small objects stay visible where shapes overlap
        anns = sorted(by_image.get(im["id"], []), key=lambda t: -float(t[1].get("area", 0) or 0))
        for i, ann in anns:
            awhere = f"{annotations}: annotation {ann.get('id', f'#{i}')}"
            seg = ann.get("segmentation")
            try:
                if isinstance(seg, list):
                    polys = [p for p in seg if isinstance(p, list)]
                    bad = [p for p in polys if len(p) < 6 or len(p) % 2]
                    if bad or not polys:
                        raise ValueError("polygon needs at least 3 x,y points")
                    rle = cocomask.merge(cocomask.frPyObjects(polys, h, w))
                elif isinstance(seg, dict) and "counts" in seg and "size" in seg:
                    if list(seg["size"]) != [h, w]:
                        raise ValueError(f"RLE size {seg['size']} differs from the image's {[h, w]}")
                    rle = cocomask.frPyObjects(seg, h, w) if isinstance(seg["counts"], list) else seg
                else:
                    raise ValueError("segmentation is neither polygons nor RLE")
                m = cocomask.decode(rle).astype(bool)
            except Exception as exc:
                result.problems.append(f"{awhere}: {exc}")
                continue
            mask[m] = cat_to_class[ann["category_id"]]
        mask_path = output / "masks" / (Path(file_name).stem + ".png")
        write_image(mask_path, mask)
        result.pairs.append(Pair(image_path, mask_path))
    return result


def _labelme_shape(shape: dict, h: int, w: int) -> np.ndarray:
    import cv2

    pts = np.asarray(shape.get("points", []), dtype=np.float64)
    kind = shape.get("shape_type") or "polygon"
    canvas = np.zeros((h, w), np.uint8)
    if pts.ndim != 2 or pts.shape[1] != 2:
        raise ValueError("points must be a list of [x, y]")
    p = np.round(pts).astype(np.int32)
    if kind == "polygon":
        if len(p) < 3:
            raise ValueError(f"polygon with {len(p)} point(s)")
        cv2.fillPoly(canvas, [p], 1)
    elif kind == "rectangle":
        if len(p) != 2:
            raise ValueError("rectangle needs 2 points")
        cv2.rectangle(canvas, tuple(p[0]), tuple(p[1]), 1, -1)
    elif kind == "circle":
        if len(p) != 2:
            raise ValueError("circle needs centre and rim points")
        r = int(round(float(np.linalg.norm(pts[1] - pts[0]))))
        cv2.circle(canvas, tuple(p[0]), r, 1, -1)
    elif kind in ("line", "linestrip"):
        cv2.polylines(canvas, [p], False, 1, thickness=1)
    elif kind == "point":
        cv2.circle(canvas, tuple(p[0]), 1, 1, -1)
    else:
        raise ValueError(f"unsupported shape_type {kind!r}")
    return canvas.astype(bool)


def import_labelme(folder: str | Path, output: str | Path, *, class_map: ClassMap | None = None) -> LabelImport:
    """LabelMe JSON files in ``folder`` (image paths relative to each JSON) -> index masks."""
    folder, output = Path(folder), Path(output)
    files = sorted(folder.glob("*.json")) if folder.is_dir() else [folder]
    if not files:
        raise InputFileError(f"{folder}: no LabelMe .json files")
    docs = [(f, _load_json(f)) for f in files]
    if class_map is None:
        labels = sorted({str(s.get("label")) for _, d in docs if isinstance(d, dict) for s in d.get("shapes", []) if s.get("label")} - {"background", "_background_"})
        class_map = ClassMap(("background", *labels), name="labelme")
    result = LabelImport(class_map)
    for path, doc in docs:
        if not isinstance(doc, dict) or "shapes" not in doc:
            result.problems.append(f"{path}: not a LabelMe file (no 'shapes')")
            continue
        image_path = path.parent / str(doc.get("imagePath", ""))
        try:
            h, w = int(doc["imageHeight"]), int(doc["imageWidth"])
        except (KeyError, TypeError, ValueError):
            if image_path.is_file():
                h, w = read_image_array(image_path).shape[:2]
            else:
                result.problems.append(f"{path}: no imageHeight/imageWidth and image {image_path} not found")
                continue
        if not image_path.is_file():
            result.problems.append(f"{path}: image {image_path} not found")
            continue
        mask = np.zeros((h, w), np.uint8 if class_map.num_classes < 256 else np.uint16)
        for i, shape in enumerate(doc["shapes"]):
            label = str(shape.get("label"))
            try:
                cls = 0 if label in ("background", "_background_") else class_map.index(label)
                mask[_labelme_shape(shape, h, w)] = cls
            except Exception as exc:
                result.problems.append(f"{path}: shape {i} ({label!r}): {exc}")
        mask_path = output / "masks" / (image_path.stem + ".png")
        write_image(mask_path, mask)
        result.pairs.append(Pair(image_path, mask_path))
    return result


def import_color_masks(masks: str | Path, images: str | Path, output: str | Path, class_map: ClassMap) -> LabelImport:
    """RGB masks coloured with ``class_map.colors`` -> index masks; unknown colours -> ignore index."""
    masks, images, output = Path(masks), Path(images), Path(output)
    if not masks.is_dir():
        raise InputFileError(f"{masks}: colour-mask folder not found")
    imgs = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES} if images.is_dir() else {}
    palette = np.asarray(class_map.colors, dtype=np.int64)
    codes = palette[:, 0] << 16 | palette[:, 1] << 8 | palette[:, 2]
    if len(set(codes.tolist())) != len(codes):
        raise InputFileError(f"class map {class_map.name!r}: two classes share a colour; colour masks would be ambiguous")
    result = LabelImport(class_map)
    for path in sorted(p for p in masks.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
        try:
            rgb = read_image_array(path)
        except InputFileError as exc:
            result.problems.append(str(exc))
            continue
        if rgb.ndim != 3 or rgb.shape[2] < 3:
            result.problems.append(f"{path}: not an RGB colour mask")
            continue
        c = rgb[..., :3].astype(np.int64)
        flat = c[..., 0] << 16 | c[..., 1] << 8 | c[..., 2]
        out = np.full(flat.shape, class_map.ignore_index, np.int64)
        for k, code in enumerate(codes):
            out[flat == code] = k
        unknown = flat[out == class_map.ignore_index]
        if unknown.size:
            vals, counts = np.unique(unknown, return_counts=True)
            top = ", ".join(f"#{v:06x} ({n} px)" for v, n in sorted(zip(vals.tolist(), counts.tolist()), key=lambda t: -t[1])[:3])
            result.problems.append(f"{path}: {unknown.size} pixels have colours not in the palette, e.g. {top}; set to ignore")
        if path.stem not in imgs:
            result.problems.append(f"{path}: no image with stem {path.stem!r} in {images}")
            continue
        mask_path = output / "masks" / (path.stem + ".png")
        write_image(mask_path, out.astype(np.uint8 if class_map.ignore_index < 256 else np.uint16))
        result.pairs.append(Pair(imgs[path.stem], mask_path))
    if not result.pairs and not result.problems:
        raise InputFileError(f"{masks}: no colour masks found")
    return result


def import_mvtec(root: str | Path, output: str | Path) -> LabelImport:
    """An MVTec-AD-style folder (``train/good``, ``test/<defect>``, ``ground_truth/<defect>/*_mask.png``)
    -> index masks with one class per defect type (``good`` = 0); good images get all-zero masks.

    The manifest's ``group`` column holds ``train``/``test`` and the defect type (``test/crack``), so
    ``segsuite split --group-by`` or the original split can be kept.
    """
    root, output = Path(root), Path(output)
    test = root / "test"
    if not (root / "train" / "good").is_dir() and not test.is_dir():
        raise InputFileError(f"{root}: not an MVTec-style folder (expected train/good/ and test/<defect>/)")
    defects = sorted(p.name for p in test.iterdir() if p.is_dir() and p.name != "good") if test.is_dir() else []
    class_map = ClassMap(("good", *defects), name=root.name or "mvtec")
    result = LabelImport(class_map)
    for split in ("train", "test"):
        base = root / split
        if not base.is_dir():
            continue
        for kind in sorted(p.name for p in base.iterdir() if p.is_dir()):
            for image_path in sorted(p for p in (base / kind).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES):
                try:
                    h, w = read_image_array(image_path).shape[:2]
                except InputFileError as exc:
                    result.problems.append(str(exc))
                    continue
                mask = np.zeros((h, w), np.uint8)
                if kind != "good":
                    gt = root / "ground_truth" / kind / f"{image_path.stem}_mask.png"
                    if not gt.exists():
                        result.problems.append(f"{image_path}: no ground-truth mask {gt}")
                        continue
                    raw = read_image_array(gt)
                    if raw.ndim == 3:
                        raw = raw[..., 0]
                    if raw.shape != (h, w):
                        result.problems.append(f"{gt}: mask is {raw.shape[1]}x{raw.shape[0]}, its image {w}x{h}")
                        continue
                    mask[raw > 0] = class_map.index(kind)
                name = f"{split}_{kind}_{image_path.stem}"
                mask_path = output / "masks" / f"{name}.png"
                write_image(mask_path, mask)
                result.pairs.append(Pair(image_path, mask_path, f"{split}/{kind}"))
    if not result.pairs and not result.problems:
        raise InputFileError(f"{root}: no images found under train/ or test/")
    return result
