"""Video input: real small videos written with cv2.VideoWriter, damaged copies, frame folders."""
from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from uvis.errors import BadInputError
from uvis.video import find_videos, image_header_size, natural_key, open_video

W, H = 64, 48


def level(i: int) -> int:
    """Grey level that identifies frame i (survives lossy coding: levels 12 apart)."""
    return 20 + 12 * i


def write_video(path: Path, fourcc: str, n: int = 20, size: tuple[int, int] = (W, H), fps: float = 10.0,
                noise: bool = False) -> Path:
    """Frame i is flat grey level(i) (or random noise, which makes frames big) with a red
    square top-left, so order, colour channels and identity can be checked after decoding."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size)
    assert writer.isOpened(), f"cv2.VideoWriter cannot write {fourcc} to {path}"
    rng = np.random.default_rng(0)
    for i in range(n):
        if noise:
            frame = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        else:
            frame = np.full((size[1], size[0], 3), level(i), np.uint8)
        frame[:8, :8] = (0, 0, 255)  # BGR red
        writer.write(frame)
    writer.release()
    return path


def frame_level(rgb: np.ndarray) -> float:
    return float(rgb[rgb.shape[0] // 2:, rgb.shape[1] // 2:].mean())


@pytest.mark.parametrize("ext,fourcc", [("mp4", "mp4v"), ("avi", "MJPG"), ("mkv", "MJPG"), ("webm", "VP80")])
def test_reads_every_container(tmp_path, ext, fourcc):
    path = write_video(tmp_path / f"clip.{ext}", fourcc, n=20)
    with open_video(path) as reader:
        info = reader.info
        assert (info.width, info.height, info.num_frames) == (W, H, 20)
        assert (info.source_width, info.source_height) == (W, H)
        assert info.fps == pytest.approx(10.0)
        assert info.name == "clip" and info.source_indices == tuple(range(20))
        frames = list(reader.frames())
    assert [t for t, _ in frames] == list(range(20))
    for t, rgb in frames:
        assert rgb.dtype == np.uint8 and rgb.shape == (H, W, 3)
        assert abs(frame_level(rgb) - level(t)) < 5, f"frame {t} out of order or wrong"
        r, g, b = rgb[2, 2]
        assert r > 200 and g < 60 and b < 60, "frames must be RGB, not BGR"


def test_stride_max_frames_downscale(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", n=20, size=(160, 120))
    with open_video(path, stride=3, max_frames=5, max_side=80, name="custom") as reader:
        info = reader.info
        assert info.name == "custom"
        assert info.source_indices == (0, 3, 6, 9, 12)
        assert info.num_frames == 5
        assert (info.width, info.height) == (80, 60)
        assert (info.source_width, info.source_height) == (160, 120)
        assert info.fps == pytest.approx(10.0 / 3)
        got = [(t, frame.shape, frame_level(frame)) for t, frame in reader.frames(start=1)]
    assert [g[0] for g in got] == [1, 2, 3, 4]
    assert all(shape == (60, 80, 3) for _, shape, _ in got)
    for t, _, lv in got:
        assert abs(lv - level(3 * t)) < 5


def test_max_side_keeps_aspect_and_small_videos_untouched(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", n=3, size=(90, 30))
    assert (open_video(path, max_side=45).info.width, open_video(path, max_side=45).info.height) == (45, 15)
    info = open_video(path, max_side=500).info
    assert (info.width, info.height) == (90, 30)


def test_random_access_matches_sequential(tmp_path, example_video):
    path = write_video(tmp_path / "clip.mp4", "mp4v", n=40, noise=True)
    for video in (path, example_video):
        with open_video(video) as reader:
            seq = {t: f for t, f in reader.frames()}
        with open_video(video) as reader:
            for t in [5, 0, 39, 12, 11, 13, 38, 1, 20]:
                assert np.array_equal(reader.read(t), seq[t]), f"{video}: read({t}) differs from iteration"
            with pytest.raises(IndexError):
                reader.read(reader.info.num_frames)


def test_bundled_example_reads_back_with_true_count(example_video):
    with open_video(example_video) as reader:
        info = reader.info
        assert (info.width, info.height, info.num_frames, info.fps) == (384, 288, 150, 10.0)
        assert sum(1 for _ in reader.frames()) == 150
    assert example_video.stat().st_size < 2 * 1024 * 1024


# ---- bad inputs -------------------------------------------------------------------------------

def test_missing_path(tmp_path):
    with pytest.raises(BadInputError, match=r"nope\.mp4: no such file"):
        open_video(tmp_path / "nope.mp4")


def test_unsupported_extension(tmp_path):
    p = tmp_path / "clip.gif"
    p.write_bytes(b"GIF89a")
    with pytest.raises(BadInputError, match=r"clip\.gif: unsupported file type '\.gif'"):
        open_video(p)


def test_text_file_renamed_mp4(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    with pytest.raises(BadInputError, match=r"notes\.mp4: cannot be opened as a video"):
        open_video(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.avi"
    p.write_bytes(b"")
    with pytest.raises(BadInputError, match=r"empty\.avi: the file is empty \(0 bytes\)"):
        open_video(p)


def test_header_ok_but_frames_undecodable(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", n=10, noise=True)
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    assert len(starts) == 10
    for i in starts:  # wipe every JPEG payload's start; the AVI container stays intact
        data[i:i + 300] = bytes(300)
    bad = tmp_path / "bad.avi"
    bad.write_bytes(bytes(data))
    with pytest.raises(BadInputError, match=r"bad\.avi: no frame can be decoded .*declares 10 frames"):
        open_video(bad)


def test_cut_mp4_is_not_a_video(tmp_path):
    path = write_video(tmp_path / "clip.mp4", "mp4v", n=20, noise=True)
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # moov atom is at the end: unreadable
    with pytest.raises(BadInputError, match=r"cut\.mp4: cannot be opened as a video"):
        open_video(cut)


def test_truncated_file_raises_or_keeps_decodable_frames(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", n=30, noise=True)
    cut = tmp_path / "cut.avi"
    cut.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.6)])
    with pytest.raises(BadInputError, match=r"cut\.avi: the file is truncated or corrupt: the container "
                                            r"declares 30 frames but only \d+ can be decoded"):
        open_video(cut)
    with open_video(cut, allow_truncated=True) as reader:
        n = reader.info.num_frames
        assert 5 < n < 30
        assert reader.warnings and "truncated" in reader.warnings[0]
        assert sum(1 for _ in reader.frames()) == n
    # A cap that stays inside the intact part never reaches the damage: no error, no full count.
    assert open_video(cut, max_frames=3).info.num_frames == 3


def test_decoding_stops_while_iterating(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", n=30, noise=True)
    data = path.read_bytes()
    reader = open_video(path)
    assert reader.info.num_frames == 30
    path.write_bytes(data[: int(len(data) * 0.5)])  # the file changes on disk after open
    seen = []
    with pytest.raises(BadInputError, match=r"clip\.avi: decoding stopped at source frame \d+, but 30 frames"):
        for t, _ in reader.frames():
            seen.append(t)
    assert 0 < len(seen) < 30 and seen == list(range(len(seen)))
    assert reader.info.num_frames == 30  # info is never changed after open


def test_absurd_video_size_needs_max_side(tmp_path):
    path = write_video(tmp_path / "wide.avi", "MJPG", n=2, size=(8200, 64))
    with pytest.raises(BadInputError, match=r"wide\.avi: the video is 8200x64 pixels, larger than 8192.*max_side"):
        open_video(path)
    info = open_video(path, max_side=512).info
    assert (info.width, info.height) == (512, 4)


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header declares width x height (the pixel data is a stub)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = lambda kind, body: (struct.pack(">I", len(body)) + kind + body  # noqa: E731
                                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))
                     + chunk(b"IEND", b""))
    return path


def test_absurd_image_size_refused_even_with_max_side(tmp_path):
    folder = tmp_path / "huge"
    folder.mkdir()
    _png_header_only(folder / "00000.png", 20000, 20000)
    with pytest.raises(BadInputError, match=r"00000\.png: the frame is 20000x20000 pixels, absurdly large"):
        open_video(folder, max_side=1024)


# ---- frame folders ----------------------------------------------------------------------------

def make_folder(folder: Path, names: list[str], size: tuple[int, int] = (W, H)) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        img = np.full((size[1], size[0], 3), level(i), np.uint8)
        img[:8, :8] = (255, 0, 0)  # BGR blue
        assert cv2.imwrite(str(folder / name), img)
    return folder


def test_frame_folder_natural_order_and_metadata(tmp_path):
    names = ["1.jpg", "2.png", "10.jpg", "11.jpeg", "100.JPG"]  # natural order; PNG and JPEG mixed
    folder = make_folder(tmp_path / "vid_a", names)
    (folder / "notes.txt").write_text("ignored")
    (folder / "sub").mkdir()
    with open_video(folder) as reader:
        info = reader.info
        assert info.name == "vid_a" and info.num_frames == 5 and info.fps == 30.0
        assert info.frame_names == tuple(names)
        for t, rgb in reader.frames():
            assert abs(frame_level(rgb) - level(t)) < 5
            r, g, b = rgb[2, 2]
            assert b > 200 and r < 60
    info = open_video(folder, stride=2, fps=5.0, max_side=32).info
    assert info.frame_names == ("1.jpg", "10.jpg", "100.JPG")
    assert info.fps == 2.5 and (info.width, info.height) == (32, 24)


def test_natural_key_orders_numbers():
    names = ["f10.jpg", "f2.jpg", "f1.jpg", "F3.jpg"]
    assert sorted(names, key=natural_key) == ["f1.jpg", "f2.jpg", "F3.jpg", "f10.jpg"]


def test_empty_folder_and_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(BadInputError, match=r"empty: the frame folder is empty"):
        open_video(empty)
    other = tmp_path / "docs"
    other.mkdir()
    (other / "readme.txt").write_text("x")
    (other / "frame.bmp").write_bytes(b"BM")
    with pytest.raises(BadInputError, match=r"docs: the folder holds no .jpg/.jpeg/.png frames \(found: frame\.bmp, "
                                            r"readme\.txt\)"):
        open_video(other)


def test_mixed_frame_sizes(tmp_path):
    folder = make_folder(tmp_path / "vid", ["00000.jpg", "00001.jpg"])
    make_folder(tmp_path / "vid", ["00002.jpg"], size=(W + 2, H))
    with pytest.raises(BadInputError, match=r"00002\.jpg: frame is 66x48 but 00000\.jpg \(the first frame\) is 64x48"):
        open_video(folder)


def test_corrupt_image_in_folder(tmp_path):
    folder = make_folder(tmp_path / "vid", ["00000.png", "00001.png", "00002.png"])
    bad = folder / "00001.png"
    bad.write_bytes(bad.read_bytes()[:60])  # header intact, pixel data cut
    with open_video(folder) as reader:
        assert reader.info.num_frames == 3
        with pytest.raises(BadInputError, match=r"00001\.png: cannot decode the image"):
            list(reader.frames())
    (folder / "00000.png").write_bytes(b"not an image at all")
    with pytest.raises(BadInputError, match=r"00000\.png: not a PNG or JPEG image"):
        open_video(folder)


@pytest.mark.parametrize("progressive", [False, True])
def test_image_header_size_matches_decoder(tmp_path, progressive):
    for w, h in [(1, 1), (33, 17), (640, 360)]:
        img = np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8)
        jpg, png = tmp_path / f"{w}.jpg", tmp_path / f"{w}.png"
        cv2.imwrite(str(jpg), img, [cv2.IMWRITE_JPEG_PROGRESSIVE, int(progressive)])
        cv2.imwrite(str(png), img)
        assert image_header_size(jpg) == (w, h)
        assert image_header_size(png) == (w, h)


def test_bad_arguments(tmp_path):
    path = write_video(tmp_path / "clip.avi", "MJPG", n=2)
    for kwargs, field in [({"stride": 0}, "stride"), ({"max_frames": 0}, "max_frames"),
                          ({"max_side": -5}, "max_side"), ({"fps": 0.0}, "fps")]:
        with pytest.raises(BadInputError, match=field):
            open_video(path, **kwargs)


def test_find_videos(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    write_video(root / "b.mp4", "mp4v", n=2)
    make_folder(root / "a_frames", ["0.jpg"])
    (root / "notes.txt").write_text("x")
    (root / "empty_dir").mkdir()
    assert [p.name for p in find_videos([root])] == ["a_frames", "b.mp4"]
    assert find_videos([root / "a_frames"]) == [root / "a_frames"]
    shutil.rmtree(root / "a_frames")
    (root / "b.mp4").unlink()
    with pytest.raises(BadInputError, match="folder holds no video"):
        find_videos([root])
    with pytest.raises(BadInputError, match="no such file"):
        find_videos([tmp_path / "missing"])
