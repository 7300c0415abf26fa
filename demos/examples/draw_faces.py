"""Draw the Image-to-image tab's example sketches the way a mouse would (round 8-px strokes,
black on a 280x280 transparent canvas, like the Sketchpad gives), and the faint face
template the Sketchpad shows to trace. The proportions are LFW's as the tab frames a face
(the average LFW face: eyes at 41% of the height, mouth at 73%).

    python -m demos.examples.draw_faces     # writes demos/examples/faces/*.png
"""
import math
from pathlib import Path

from PIL import Image, ImageDraw

FOLDER = Path(__file__).parent / "faces"
SIZE = 280


def arc(cx, cy, rx, ry, start, end, steps=32):
    """Points along an ellipse in canvas pixels, angles in degrees, y pointing down."""
    return [(cx + rx * math.cos(math.radians(a)), cy + ry * math.sin(math.radians(a)))
            for a in (start + (end - start) * i / steps for i in range(steps + 1))]


FACE = [arc(140, 150, 72, 108, 0, 360)]
EYES = [arc(102, 116, 17, 8, 0, 360), arc(178, 116, 17, 8, 0, 360)]
BROWS = [arc(102, 104, 22, 10, 200, 340), arc(178, 104, 22, 10, 200, 340)]
NOSE = [[(140, 120), (134, 160), (142, 168)]]
MOUTH = [arc(140, 190, 28, 14, 20, 160)]
SKETCHES = {
    "face_simple": FACE + EYES + NOSE + MOUTH,
    "face_hair_and_brows": FACE + EYES + BROWS + NOSE + MOUTH + [arc(140, 130, 80, 95, 190, 350),
                                                                [(70, 120), (62, 60), (100, 40)],
                                                                [(210, 120), (218, 60), (180, 40)]],
    "face_glasses": FACE + EYES + NOSE + MOUTH + [arc(102, 116, 26, 18, 0, 360), arc(178, 116, 26, 18, 0, 360),
                                                   [(128, 114), (152, 114)]],
    "face_beard": FACE + EYES + BROWS + NOSE + MOUTH + [arc(140, 180, 66, 70, 10, 170),
                                                        [(118, 178), (140, 174), (162, 178)]],
}


def draw(strokes, brush: int = 8) -> Image.Image:
    image = Image.new("RGBA", (SIZE, SIZE), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    for stroke in strokes:
        pen.line(stroke, fill=(0, 0, 0, 255), width=brush, joint="curve")
    return image


def template() -> Image.Image:
    """White paper with the face's outline, eyes, nose and mouth in faint grey: light enough
    that the tab reads only what the user draws over it."""
    paper = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    pen = ImageDraw.Draw(paper)
    for stroke in FACE + EYES + NOSE + MOUTH:
        pen.line(stroke, fill=(222, 226, 232), width=3, joint="curve")
    return paper


def main():
    FOLDER.mkdir(parents=True, exist_ok=True)
    for name, strokes in SKETCHES.items():
        draw(strokes).save(FOLDER / f"{name}.png")
    template().save(FOLDER / "template.png")
    print(f"wrote {len(SKETCHES) + 1} pictures to {FOLDER}")


if __name__ == "__main__":
    main()
