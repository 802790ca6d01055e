"""thflax.inference.jobs: reading a jobs CSV, each row's arguments, and the clash check (no model, no CLI)."""

import os

import pytest

from thflax.errors import InputError
from thflax.inference import jobs, options


def _write(tmp_path, text: str) -> str:
    path = tmp_path / "jobs.csv"
    path.write_text(text)
    return str(path)


def test_rows_numbers_lines_and_paths(tmp_path):
    path = _write(tmp_path, "Image, audio ,out,still\nface.png,a.wav,o.mp4,yes\n\n,,,\nface.png,a.wav,p.mp4,,extra\n")
    rows = jobs.read_jobs(path)
    assert [(j.number, j.line) for j in rows] == [(1, 2), (2, 5)]  # blank lines are not rows
    assert rows[0].values == {"image": "face.png", "audio": "a.wav", "out": "o.mp4", "still": "yes"}
    assert rows[1].values is None and rows[0].file == "jobs.csv" and rows[0].base == str(tmp_path)
    assert rows[0].paths() == {c: os.path.join(str(tmp_path), f) for c, f in
                               (("image", "face.png"), ("audio", "a.wav"), ("out", "o.mp4"))}
    args = rows[0].arguments()
    assert args["still"] is True and args["face_index"] is None and "text" not in args
    with pytest.raises(InputError, match="more values than the header has columns"):
        rows[1].arguments()


def test_text_rows_take_the_defaults_given_and_are_range_checked(tmp_path):
    rows = jobs.read_jobs(_write(tmp_path, "image,text,out,rate,voice\nf.png,Hi,o.mp4,,\nf.png,Hi,p.mp4,500,en\n"))
    args = rows[0].arguments()
    assert (args["voice"], args["rate"], args["pitch"]) == (options.DEFAULT_VOICE, options.DEFAULT_RATE,
                                                             options.DEFAULT_PITCH)
    assert rows[0].arguments(rate=120, still=True)["rate"] == 120
    assert rows[0].arguments(still=True)["still"] is True
    with pytest.raises(InputError, match=r"^rate 500 is out of range \(80..450 words per minute\)$"):
        rows[1].arguments()


def test_head_motion_column_defaults_to_the_flag_and_is_range_checked(tmp_path):
    rows = jobs.read_jobs(_write(tmp_path, "image,audio,out,head_motion\nf.png,a.wav,o.mp4,\nf.png,a.wav,p.mp4,0.5\n"
                                           "f.png,a.wav,q.mp4,4\nf.png,a.wav,r.mp4,lots\n"))
    assert rows[0].arguments()["head_motion"] == options.DEFAULT_HEAD_MOTION == 1.0
    assert rows[0].arguments(head_motion=2.0)["head_motion"] == 2.0  # the --head_motion flag for empty cells
    assert rows[1].arguments(head_motion=2.0)["head_motion"] == 0.5
    with pytest.raises(InputError, match=r"^head_motion 4 is out of range \(0..3\)$"):
        rows[2].arguments()
    with pytest.raises(InputError, match="^head_motion must be a number, not 'lots'$"):
        rows[3].arguments()


@pytest.mark.parametrize("text,message", [
    ("", "is empty"),
    ("image,out\nface.png,o.mp4\n", "no audio or text column"),
    ("image,audio,out,colour\nface.png,a.wav,o.mp4,red\n", "unknown column 'colour'"),
    ("image,audio,out,OUT\nface.png,a.wav,o.mp4,p.mp4\n", "named twice"),
    ("image,audio,out\n", "no jobs"),
])
def test_bad_files_are_one_line(tmp_path, text, message):
    with pytest.raises(InputError, match=message):
        jobs.read_jobs(_write(tmp_path, text))
    with pytest.raises(InputError, match="is a folder"):
        jobs.read_jobs(str(tmp_path))


def test_an_out_that_is_an_input_refuses_the_file(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"x")
    rows = jobs.read_jobs(_write(tmp_path, "image,video,audio,out\nf.png,,a.wav,./v.mp4\n,v.mp4,a.wav,r2.mp4\n"))
    with pytest.raises(InputError, match=r"^jobs.csv: row 1 \(line 2\)'s out ./v.mp4 is row 2 \(line 3\)'s video "
                                         r"input v.mp4; writing it would destroy that input; nothing was written$"):
        jobs.check_job_paths(rows)
    jobs.check_job_paths(jobs.read_jobs(_write(tmp_path, "image,audio,out\nf.png,a.wav,r1.mp4\nf.png,a.wav,r2.mp4\n")))
