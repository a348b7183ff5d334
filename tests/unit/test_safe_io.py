"""Image modes read as a viewer shows them, NaN maps refused, result names, file modes, stale temporaries."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from lvwlib.core.metrics import iou_coverage, iou_sweep
from lvwlib.data import load_image
from lvwlib.experiment.names import absolute_dataset, results_name
from lvwlib.store.records import atomic_path, remove_stale_temporaries, write_json


def _pixels(path, size=2) -> list[list[int]]:
    """load_image of a 2x2 file as rounded 0..255 ints, [3][4] (channel, pixel in row order)."""
    x = load_image(path, size)
    assert x.shape == (3, size, size) and x.dtype == torch.float32
    return (x * 255).round().int().flatten(1).tolist()


def test_grayscale_is_replicated(tmp_path):
    Image.fromarray(np.array([[0, 64], [128, 255]], dtype=np.uint8), mode="L").save(tmp_path / "g.png")
    assert _pixels(tmp_path / "g.png") == [[0, 64, 128, 255]] * 3


def test_16bit_grayscale_is_scaled_not_clipped(tmp_path):
    # convert("RGB") clips 16-bit values to 255: a 50 % grey would come out white.
    arr = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode.startswith("I")
    assert _pixels(tmp_path / "g16.png") == [[0, 64, 128, 255]] * 3


def test_cmyk_jpeg_colours(tmp_path):
    # white, cyan, magenta, black (K); JPEG is lossy, so compare within a few levels.
    cmyk = np.array([[[0, 0, 0, 0], [255, 0, 0, 0]], [[0, 255, 0, 0], [0, 0, 0, 255]]], dtype=np.uint8)
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    got = np.array(_pixels(tmp_path / "c.jpg"))
    want = np.array([[255, 0, 255, 0], [255, 255, 0, 0], [255, 255, 255, 0]])
    assert np.abs(got - want).max() <= 8


def test_png_alpha_is_composited_over_white(tmp_path):
    # opaque red, fully transparent "green" (must not show), half-transparent blue, opaque black
    rgba = np.array(
        [[[255, 0, 0, 255], [0, 255, 0, 0]], [[0, 0, 255, 128], [0, 0, 0, 255]]], dtype=np.uint8
    )
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    # half blue over white: 255 * (1 - 128/255) = 127 in R and G, 255 in B
    assert _pixels(tmp_path / "a.png") == [[255, 255, 127, 0], [0, 255, 127, 0], [0, 255, 255, 0]]


def test_palette_with_transparent_index(tmp_path):
    img = Image.new("P", (2, 2))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)  # index 0 red, 1 blue
    img.putdata([0, 1, 1, 0])
    img.save(tmp_path / "p.png", transparency=1)  # blue is the transparent colour
    assert _pixels(tmp_path / "p.png") == [[255, 255, 255, 255], [0, 255, 255, 0], [0, 255, 255, 0]]


def test_nan_in_a_map_is_an_error_not_iou_one():
    cams = torch.rand(2, 4, 4)
    words = torch.rand(2, 3, 4, 4)
    words[1, 0, 2, 2] = float("nan")
    with pytest.raises(ValueError, match=r"word activation maps.*NaN.*\[1\]"):
        iou_coverage(cams, words, 50, 8)
    cams[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"Grad-CAM maps.*NaN or inf.*\[0\]"):
        iou_coverage(cams, torch.rand(2, 3, 4, 4), 50, 8)
    with pytest.raises(ValueError, match="NaN"):
        iou_sweep(torch.full((1, 2, 2), float("nan")), torch.rand(1, 1, 2, 2), [50.0, 90.0], 8)


def test_results_name_of_registry_names_and_folders(tmp_path):
    assert results_name("synthetic") == "synthetic"
    assert results_name("imagenette") == "imagenette"
    a, b = tmp_path / "a" / "my pets!", tmp_path / "b" / "my pets!"
    a.mkdir(parents=True), b.mkdir(parents=True)
    na, nb = results_name(str(a)), results_name(str(b))
    assert na.startswith("my_pets-") and nb.startswith("my_pets-") and na != nb  # clash-safe
    assert "/" not in na and len(na) == len("my_pets-") + 8
    # a folder called like a registry set does not share its results folder
    own = tmp_path / "imagenette"
    own.mkdir()
    assert results_name(str(own)).startswith("imagenette-")
    # the same folder spelled differently gets the same name
    assert results_name(str(a) + "/") == na == results_name(str(tmp_path / "a" / ".." / "a" / "my pets!"))
    assert results_name("/") == f"dataset-{results_name('/').split('-')[-1]}"
    assert absolute_dataset("synthetic") == "synthetic"
    assert absolute_dataset("some/rel") == os.path.abspath("some/rel")


def test_names_command_line(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "lvwlib", "names", "name", str(tmp_path)], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == results_name(str(tmp_path))


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o077])
def test_written_files_respect_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json(tmp_path / "r.json", {"a": 1})
        with atomic_path(tmp_path / "f.png") as tmp:
            tmp.write_bytes(b"x")
    finally:
        os.umask(old)
    for name in ("r.json", "f.png"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o666 & ~umask


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_temporaries_of_killed_writers_are_removed(tmp_path):
    from lvwlib.store.records import HOST

    dead = _dead_pid()
    stale = tmp_path / "sub" / f".table1.csv.{HOST}.{dead}-0123abcd.tmp"
    live = tmp_path / f".other.csv.{HOST}.{os.getpid()}-0123abcd.tmp"  # this process: kept
    foreign = tmp_path / f".x.csv.otherhost.{dead}-0123abcd.tmp"  # another host's writer: kept
    for p in (stale, live, foreign):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("half")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists() and live.exists() and foreign.exists()
    # and a write of the same file removes its own stale temporaries
    stale2 = tmp_path / f".r.json.{HOST}.{dead}-89abcdef.tmp"
    stale2.write_text("half")
    write_json(tmp_path / "r.json", [1])
    assert not stale2.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["sub", live.name, foreign.name, "r.json"])
