"""Write the Space's example control pictures (``examples/*.png``): simple dark drawings on white at 64×64, the
style of the Openclipart training drawings, whose Canny edges the Space feeds to the ControlNet. Drawn here rather
than taken from the data so that the Space ships no third-party images.

    python spaces/text-to-image/make_examples.py
"""

from pathlib import Path

from PIL import Image, ImageDraw

HERE = Path(__file__).resolve().parent
SIZE = 64


def draw(name: str) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), "white")
    pen = ImageDraw.Draw(image)
    if name == "circle":
        pen.ellipse((12, 12, 52, 52), fill=(200, 40, 40), outline="black", width=2)
    elif name == "house":
        pen.rectangle((16, 30, 48, 54), fill=(230, 200, 120), outline="black", width=2)
        pen.polygon([(12, 30), (32, 10), (52, 30)], fill=(180, 30, 30), outline="black")
    elif name == "star":
        points = [(32, 6), (39, 24), (58, 24), (43, 36), (49, 56), (32, 44), (15, 56), (21, 36), (6, 24), (25, 24)]
        pen.polygon(points, fill=(240, 200, 20), outline="black")
    elif name == "tree":
        pen.rectangle((28, 40, 36, 58), fill=(120, 70, 30))
        pen.ellipse((14, 6, 50, 44), fill=(40, 150, 50), outline="black", width=2)
    return image


if __name__ == "__main__":
    for name in ("circle", "house", "star", "tree"):
        draw(name).save(HERE / "examples" / f"{name}.png")
