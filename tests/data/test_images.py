"""Finding the picture an annotation means, reading its size from the header, and which frame boxes are in."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from yolo_asff.data.frames import choose_frame
from yolo_asff.data.images import ImageProbe, PictureFinder, decode_picture, probe_image


def write(path, h=20, w=30):
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return path


def exif_rotated(path, h=40, w=100, orientation=6):
    """A picture stored ``w`` × ``h`` whose EXIF orientation makes OpenCV turn it (6: a quarter turn)."""
    pixels = np.zeros((h, w, 3), np.uint8)
    pixels[:10, :10] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    return path


@pytest.mark.parametrize("given, found, rule", [
    ("a.jpg", "a.jpg", "exact"),
    ("A.JPG", "a.jpg", "case"),              # another letter case (a tool on Windows or macOS)
    ("b.jpg", "b.PNG", "stem"),              # the same picture saved as another format
    ("sub\\c.jpg", "sub/c.jpg", "exact"),    # Windows separators
    ("C:\\Users\\ann\\pics\\a.jpg", "a.jpg", "basename"),  # a path on the annotating machine
    ("/home/someone/data/a.jpg", "a.jpg", "basename"),
    ("images/train/a.jpg", "a.jpg", "basename"),           # the folder prefix is already in img_dir
])
def test_finder_finds_the_picture_an_annotation_means(tmp_path, given, found, rule):
    for name in ("a.jpg", "b.PNG", "sub/c.jpg"):
        write(tmp_path / name)
    lookup = PictureFinder(tmp_path).find(given)
    assert lookup.path == tmp_path / found and lookup.rule == rule


def test_finder_by_id_with_any_extension_and_what_it_found_when_unusable(tmp_path):
    write(tmp_path / "000001.png")
    (tmp_path / "000002.jpg.bak").write_bytes(b"old")
    (tmp_path / "000002.webp").write_bytes(b"not a picture")
    finder = PictureFinder(tmp_path)
    assert finder.find(None, "000001").path == tmp_path / "000001.png"
    missing = finder.find("000002.jpg", "000002")
    assert missing.path is None and set(missing.found) == {"000002.jpg.bak", "000002.webp"}
    assert finder.find("000003.jpg").found == ()


def test_probe_reads_the_size_opencv_decodes(tmp_path):
    probe = probe_image(write(tmp_path / "p.png", h=20, w=30))
    assert (probe.width, probe.height, probe.rotated, probe.error) == (30, 20, False, None)
    rotated = probe_image(exif_rotated(tmp_path / "r.jpg"))
    assert (rotated.stored_width, rotated.stored_height) == (100, 40)
    assert (rotated.width, rotated.height) == (40, 100) and rotated.rotated
    assert decode_picture(tmp_path / "r.jpg").shape[:2] == (100, 40)
    assert decode_picture(tmp_path / "r.jpg", ignore_orientation=True).shape[:2] == (40, 100)
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 not really")
    assert probe_image(tmp_path / "bad.jpg").error
    assert probe_image(tmp_path / "none.jpg").error == "missing"


def box(x1, y1, x2, y2):
    return np.array([[x1, y1, x2, y2]], np.float64)


PICTURE = ImageProbe(200, 100, 200, 100)          # a 200 × 100 picture
ROTATED = ImageProbe(100, 200, 200, 100)           # stored 200 × 100, decoded 100 × 200 (EXIF 6)


@pytest.mark.parametrize("annotated, probe, boxes, frame, kind", [
    ((200, 100), PICTURE, box(10, 10, 190, 90), (200, 100, 1.0, False), None),
    (None, PICTURE, box(10, 10, 190, 90), (200, 100, 1.0, False), "no image size"),
    # resized after annotation: the box reaches past the picture, it fits the annotated 400 × 200 frame
    ((400, 200), PICTURE, box(20, 20, 380, 180), (200, 100, 0.5, False), "resized"),
    # the size field is wrong (not the picture's aspect): the box fits the picture itself
    ((640, 480), PICTURE, box(10, 10, 190, 90), (200, 100, 1.0, False), "boxes fit the picture"),
    # annotated in the stored frame of an EXIF-rotated picture: read it without rotation
    ((200, 100), ROTATED, box(150, 10, 190, 90), (200, 100, 1.0, True), "stored frame"),
    (None, ROTATED, box(150, 10, 190, 90), (200, 100, 1.0, True), "stored frame"),
    ((300, 300), PICTURE, np.zeros((0, 4)), (200, 100, 1.0, False), "no boxes"),
])
def test_choose_frame(annotated, probe, boxes, frame, kind):
    choice = choose_frame(annotated, probe, boxes)
    f = choice.frame
    assert (f.width, f.height, f.scale_x, f.ignore_orientation) == frame
    assert (choice.problem is None) if kind is None else kind in choice.problem


@pytest.mark.parametrize("annotated, boxes, why", [
    ((400, 200), box(10, 10, 50, 50), "fit both"),       # fits the picture and the annotated frame
    ((400, 200), box(10, 10, 450, 50), "fit neither"),   # fits no frame at all
])
def test_ambiguous_or_impossible_frames_skip_the_image(annotated, boxes, why):
    choice = choose_frame(annotated, PICTURE, boxes)
    assert choice.frame is None and why in choice.problem and "image skipped" in choice.problem


def test_sizes_that_differ_by_rounding_are_the_same_frame():
    for annotated in ((201, 100), (200, 99), (200.4, 100.0)):
        choice = choose_frame(annotated, PICTURE, box(10, 10, 190, 90))
        assert choice.frame == choose_frame((200, 100), PICTURE, box(10, 10, 190, 90)).frame and choice.problem is None


def test_orientations_the_sizes_cannot_reveal_are_counted():
    square_turned = ImageProbe(100, 100, 100, 100, orientation=6)
    choice = choose_frame((100, 100), square_turned, box(10, 10, 50, 50))
    assert choice.frame.width == 100 and not choice.frame.ignore_orientation
    assert "EXIF orientation the sizes cannot check" in choice.problem and "orientation 6" in choice.detail


def test_a_wrong_filename_falls_back_to_the_id(tmp_path):
    write(tmp_path / "0001.png")
    lookup = PictureFinder(tmp_path).find("IMG_1234.jpg", "0001")
    assert lookup.path == tmp_path / "0001.png" and lookup.rule == "stem"
