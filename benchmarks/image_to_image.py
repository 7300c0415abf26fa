"""The Image-to-image tab's speed and its sample sheets.

    python -m benchmarks.image_to_image            # latency, and docs/image_to_image_*.jpg
    python -m benchmarks.image_to_image --no-sheets

Latency: a drawing from the Sketchpad (280x280 RGBA) to the 256-px face the tab shows, the way
the tab computes it (read the drawing, the network, the upscale), median of 50 after a warm-up
(asked: under 100 ms, so the face follows the drawing live); the network alone; and colouring
a 512-px picture; putting a mask on the face of a 512-px photo (the detector, the crop, the
CycleGAN). Sheets: for 16 test people's photos (people no network here trained on), the
sketch made from the photo, the face drawn from it and the photo; the project's example
drawings and their faces; for colour, the grey photo, the colours and the photo, and
scikit-image's pictures coloured at their own size; for the masks, held-out faces with a mask
put on and masked ones with it taken off. For reference beside grey -> colour's L1 and PSNR:
the same numbers for the grey photo itself (no colour added) on the test people; beside the
mask network's "same person" rates, how often face verification matches a test person's face
given a mask with a random other test person's photo (chance: the verifier's false matches).
"""
import argparse
import functools
import json
import statistics
import time

import numpy as np
import torch
from PIL import Image

from core import checkpoints, data
from core.data import REPO
from demos import image_to_image as demo
from models import image_to_image as i2i


def timed(fn, repeats: int = 50) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


def tile(t: torch.Tensor) -> Image.Image:
    """(C, H, W) in [-1, 1] -> a 128-px tile."""
    pixels = i2i.to_uint8(t.expand(3, -1, -1)).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels).resize((128, 128), Image.Resampling.LANCZOS)


def sheet(rows: list[list[Image.Image]]) -> Image.Image:
    """Rows of tiles side by side; the rows one under another, transposed so each row of the
    result is one kind (sketch, output, photo)."""
    columns = list(zip(*rows))
    out = Image.new("RGB", (128 * len(rows), 128 * len(columns)), "white")
    for r, kind in enumerate(columns):
        for c, picture in enumerate(kind):
            out.paste(picture, (128 * c, 128 * r))
    return out


def test_people_sheet(task: str, n: int = 16) -> Image.Image:
    from train.image_to_image import sources

    rows = test_rows()
    picked = rows[torch.linspace(0, len(rows) - 1, n).long()]
    faces64 = data.lfw_faces(i2i.SIZE)[picked]
    targets = i2i.to_model(faces64)
    ink = None
    if task == "sketch_to_face":
        faces112 = data.lfw_faces(112)[picked]
        ink = torch.cat([i2i.edges(faces112, 2.0), i2i.edges(faces112, 3.0)], 1)
    source = sources(task, targets, ink, None)
    outputs = i2i.translate(i2i.load(task), source)
    shown = -source if task == "sketch_to_face" else source  # ink dark on light paper, as drawn
    return sheet([[tile(s), tile(o), tile(t)] for s, o, t in zip(shown, outputs, targets)])


@functools.cache
def test_rows() -> torch.Tensor:
    """Rows of data.lfw_faces of the test people (train/image_to_image.py's split)."""
    from train.image_to_image import split

    return split(argparse.Namespace(data_dir=None, limit=0))["rows"]["test"]


def grey_baseline() -> dict:
    """L1 and PSNR of the grey photo itself against the colour one, on every test photo."""
    from train.image_to_image import pixel_errors

    rows = test_rows()
    targets = i2i.to_model(data.lfw_faces(i2i.SIZE)[rows])
    return {"photos": len(rows), **pixel_errors(i2i.grey(targets).expand_as(targets), targets)}


def mask_same_person_by_chance(n: int = 400) -> float:
    """The first n test people's photos (those train.cyclegan judges) with a mask put on, each
    against a photo of another test person drawn at random."""
    from train.cyclegan import Judge
    from train.faces import photo_index

    rows = test_rows()
    person = {row: name for (name, _), row in photo_index(data.lfw_dir()).items()}
    names = [person[r] for r in rows.tolist()]
    g = torch.Generator().manual_seed(0)
    others = []
    for k in range(n):
        j = k
        while names[j] == names[k]:
            j = int(torch.randint(len(rows), (1,), generator=g))
        others.append(j)
    faces = data.lfw_faces(i2i.SIZE)
    bare = faces[rows[:n]]
    added = i2i.to_uint8(i2i.translate(i2i.load_mask_cyclegan().add_mask, i2i.to_model(bare)))
    return round(Judge("cpu").same_person(faces[rows[others]], added).float().mean().item(), 4)


def colour_examples_sheet() -> Image.Image:
    """scikit-image's pictures: the grey given, the colours, the original, 256 px tall each."""
    tiles = []
    for path in demo.colour_examples():
        with Image.open(path) as picture:
            original = picture.convert("RGB")
        coloured, grey = demo.colourise(original)
        tiles.append([p.resize((round(256 * p.width / p.height), 256), Image.Resampling.LANCZOS)
                      for p in (grey, coloured, original)])
    width = max(sum(t.width for t in row) for row in tiles)
    out = Image.new("RGB", (width, 256 * len(tiles)), "white")
    for r, row in enumerate(tiles):
        x = 0
        for t in row:
            out.paste(t, (x, 256 * r))
            x += t.width
    return out


def mask_sheet(n: int = 8) -> Image.Image:
    """n test people's faces over the same faces with a mask put on; under them n held-out masked
    faces over the same faces with it taken off."""
    from train.cyclegan import masked_faces

    rows = test_rows()
    bare = data.lfw_faces(i2i.SIZE)[rows[torch.linspace(0, len(rows) - 1, n).long()]]
    masked = masked_faces("test", argparse.Namespace(data_dir=None, limit=0))
    masked = masked[torch.linspace(0, len(masked) - 1, n).long()]
    model = i2i.load_mask_cyclegan()
    added = i2i.translate(model.add_mask, i2i.to_model(bare))
    removed = i2i.translate(model.remove_mask, i2i.to_model(masked))
    halves = [sheet([[tile(a), tile(b)] for a, b in zip(i2i.to_model(faces), changed)])
              for faces, changed in ((bare, added), (masked, removed))]
    out = Image.new("RGB", (halves[0].width, 2 * halves[0].height), "white")
    out.paste(halves[0], (0, 0))
    out.paste(halves[1], (0, halves[0].height))
    return out


def examples_sheet() -> Image.Image:
    rows = []
    for path in sorted(demo.EXAMPLES.glob("face_*.png")):
        drawing = Image.alpha_composite(Image.new("RGBA", (280, 280), "white"), Image.open(path).convert("RGBA"))
        rows.append([drawing.convert("RGB").resize((128, 128)), demo.sketch_to_face(path).resize((128, 128))])
    return sheet(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-sheets", action="store_true", help="only the latency")
    args = parser.parse_args(argv)
    results = {"threads": torch.get_num_threads()}
    if checkpoints.find(i2i.checkpoint_name("sketch_to_face")):
        drawing = np.asarray(Image.open(sorted(demo.EXAMPLES.glob("face_*.png"))[0]).convert("RGBA"))
        net = demo.load("sketch_to_face")
        ink = i2i.read_drawing(drawing) * 2 - 1
        results["sketch_to_face_ms"] = round(timed(lambda: demo.sketch_to_face(drawing)), 1)
        results["sketch_network_only_ms"] = round(timed(lambda: i2i.translate(net, ink)), 1)
        if not args.no_sheets:
            test_people_sheet("sketch_to_face").save(REPO / "docs" / "image_to_image_sketch_test.jpg", quality=90)
            examples_sheet().save(REPO / "docs" / "image_to_image_sketch_examples.jpg", quality=90)
    if checkpoints.find(i2i.checkpoint_name("grey_to_colour")):
        photo = Image.open(demo.colour_examples()[0]).convert("RGB").resize((512, 512))
        results["colourise_512px_ms"] = round(timed(lambda: demo.colourise(photo), 20), 1)
        if not args.no_sheets:
            test_people_sheet("grey_to_colour").save(REPO / "docs" / "image_to_image_colour_test.jpg", quality=90)
            colour_examples_sheet().save(REPO / "docs" / "image_to_image_colour_examples.jpg", quality=90)
        results["grey_itself_on_the_test_people"] = grey_baseline()
    if checkpoints.find(i2i.checkpoint_name(i2i.MASK)):
        photo = Image.open(demo.SKIMAGE_DATA / "astronaut.png").convert("RGB")
        results["add_mask_512px_photo_ms"] = round(timed(lambda: demo.change_mask(photo, "add_mask"), 20), 1)
        face = i2i.to_model(data.lfw_faces(i2i.SIZE)[:1])
        results["add_mask_network_only_ms"] = round(timed(lambda: i2i.translate(demo.load_mask_model().add_mask, face)), 1)
        if not args.no_sheets:
            mask_sheet().save(REPO / "docs" / "image_to_image_mask_test.jpg", quality=90)
        results["add_mask_same_person_as_another_test_person"] = mask_same_person_by_chance()
    print(json.dumps(results))
    return results


if __name__ == "__main__":
    main()
