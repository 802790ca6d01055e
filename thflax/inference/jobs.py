"""Jobs files: many videos from one CSV (generate.py --jobs), read and checked before any work.

A jobs file has a header line naming its columns (`COLUMNS`) and one video a row; paths are relative
to the CSV's folder. `read_jobs` reads it into `Job`s (InputError for an unreadable file or a bad
header), `check_job_paths` refuses the whole file when an output would destroy any row's input or
another row's output, and `Job.arguments` turns one row into `generation.generate`'s keyword
arguments (InputError, one line, for a bad row). Nothing here prints or exits: the caller reports,
naming the row by `Job.number` and `Job.line`.
"""

from __future__ import annotations

import csv
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from thflax.errors import InputError
from thflax.inference import options

#: The columns a jobs file may have (header names are case-insensitive).
COLUMNS = ("image", "video", "audio", "text", "out", "voice", "rate", "pitch", "still", "face_index", "blink_rate",
           "head_motion")
#: The columns that name files: the ones a row reads, and the one it writes.
INPUT_COLUMNS, OUTPUT_COLUMN = ("image", "video", "audio"), "out"
_TRUE, _FALSE = {"1", "true", "yes", "y"}, {"", "0", "false", "no", "n"}


@dataclasses.dataclass(frozen=True)
class Job:
    """One row of a jobs file, as written (checked by `arguments`)."""

    number: int  # row number: the non-blank lines after the header, from 1
    line: int  # where the row ends in the file (the header is line 1)
    values: dict[str, str] | None  # {column: value, stripped}; None when the row has more values than columns
    base: str  # the CSV's folder (absolute): relative paths start here
    file: str  # the CSV's file name, for messages

    def paths(self) -> dict[str, str]:
        """The files the row names, by column (relative ones joined to `base`, ~ expanded)."""
        row = self.values or {}
        return {c: os.path.join(self.base, os.path.expanduser(row[c])) for c in (*INPUT_COLUMNS, OUTPUT_COLUMN)
                if row.get(c)}

    def arguments(self, *, still: bool = False, face_index: int | None = None, voice: str = options.DEFAULT_VOICE,
                  rate: int = options.DEFAULT_RATE, pitch: int = options.DEFAULT_PITCH,
                  blink_rate: float = options.DEFAULT_BLINK_RATE,
                  head_motion: float = options.DEFAULT_HEAD_MOTION) -> dict[str, Any]:
        """`generation.generate`'s arguments for this row; the keyword arguments are what an empty or
        missing column gets (generate.py passes its flags). InputError (one line) for a bad row, its
        numbers checked against generation's ranges now, before any model is loaded."""
        row = self.values
        if row is None:
            raise InputError("more values than the header has columns")
        path = self.paths().get

        def integer(name: str, default: int | None) -> int | None:
            value = row.get(name) or ""
            if not value:
                return default
            try:
                return int(value)
            except ValueError:
                raise InputError(f"{name} must be a whole number, not {value!r}") from None

        def number(name: str, default: float) -> float:
            value = row.get(name) or ""
            if not value:
                return default
            try:
                return float(value)
            except ValueError:
                raise InputError(f"{name} must be a number, not {value!r}") from None

        image, video, audio, out = path("image"), path("video"), path("audio"), path("out")
        text = row.get("text") or None
        if image is not None and video is not None:
            raise InputError("give image or video, not both")
        if image is None and video is None:
            raise InputError("no image or video given")
        if out is None:
            raise InputError("no out given")
        if audio is not None and text is not None:
            raise InputError("give audio or text, not both")
        if audio is None and text is None:
            raise InputError("give audio or text")
        still_value = (row.get("still") or "").lower()
        if still_value not in _TRUE | _FALSE:
            raise InputError(f"still must be 1/0, true/false or yes/no, not {row['still']!r}")
        kwargs: dict[str, Any] = dict(image=image, video=video, audio=audio, out=out,
                                      still=still_value in _TRUE if still_value else still,
                                      face_index=integer("face_index", face_index),
                                      blink_rate=number("blink_rate", blink_rate),
                                      head_motion=number("head_motion", head_motion))
        if text is not None:
            kwargs.update(text=text, voice=row.get("voice") or voice, rate=integer("rate", rate),
                          pitch=integer("pitch", pitch))
        options.check_options(**{k: kwargs[k] for k in ("face_index", "rate", "pitch", "blink_rate", "head_motion")
                                 if k in kwargs},
                              prefix="")
        return kwargs


def read_jobs(path: str) -> list[Job]:
    """The rows of the jobs CSV at `path` (blank lines are not rows); InputError (one line) for a
    missing, unreadable or empty file, a bad header (unknown or repeated column, no image/video, audio/text
    or out column) or a header without rows. The rows themselves are checked by `Job.arguments`."""
    if os.path.isdir(path):
        raise InputError(f"--jobs {path} is a folder, not a CSV file")
    if not os.path.isfile(path):
        raise InputError(f"jobs file not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            lines = [(reader.line_num, row) for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"cannot read jobs file {path}: {e}") from e
    if not header or not any(c.strip() for c in header):
        raise InputError(f"jobs file {path} is empty: it needs a header line such as image,audio,out")
    columns = [c.strip().lower() for c in header]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown:
        raise InputError(f"jobs file {path}: unknown column {unknown[0]!r} (columns: {', '.join(COLUMNS)})")
    if len(set(columns)) != len(columns):
        raise InputError(f"jobs file {path}: a column is named twice in the header")
    missing = [] if "image" in columns or "video" in columns else ["image or video"]
    missing += [] if "out" in columns else ["out"]
    if "audio" not in columns and "text" not in columns:
        missing.append("audio or text")
    if missing:
        raise InputError(f"jobs file {path}: the header has no {' and no '.join(missing)} column")
    base, name = os.path.dirname(os.path.abspath(path)), os.path.basename(path)
    jobs = []
    for number, (line, values) in enumerate((r for r in lines if any(v.strip() for v in r[1])), start=1):
        row = {c: v.strip() for c, v in zip(columns, values)} if len(values) <= len(columns) else None
        jobs.append(Job(number, line, row, base, name))
    if not jobs:
        raise InputError(f"jobs file {path} has a header but no jobs")
    return jobs


def _file_keys(path: str) -> set:
    """What identifies the file at `path`: its real path (./x, d/../x and symlinks resolved; so a file yet to
    be written compares too) and, when it exists, its device and inode (hard links: os.path.samefile's test)."""
    keys: set = {os.path.realpath(path)}
    try:
        st = os.stat(path)
        keys.add((st.st_dev, st.st_ino))
    except OSError:
        pass
    return keys


def check_job_paths(jobs: Sequence[Job]) -> None:
    """InputError (one line naming the rows and the path) when an out of the jobs file is a file any row
    reads (its own row's included) or another row's out too.

    Checked for the whole file before anything is written: row by row, an earlier row would already have
    overwritten a later row's input (or the later row would dub the new video instead of the user's).
    Rows that are bad otherwise count too: they name the user's files all the same (only a row with more
    values than columns names nothing for certain, and is reported as bad by `Job.arguments`).
    """
    named = [(job, job.paths()) for job in jobs if job.values is not None]
    owners: dict = {}  # file key -> (row number, line, column, path as written) of every row naming it
    for job, paths in named:
        for column, path in paths.items():
            for key in _file_keys(path):
                owners.setdefault(key, []).append((job.number, job.line, column, job.values[column]))
    clashes = []
    for job, paths in named:
        if OUTPUT_COLUMN not in paths:
            continue
        seen = set()
        for key in _file_keys(paths[OUTPUT_COLUMN]):
            for other in owners[key]:
                if other[:3] in seen or other[:3] == (job.number, job.line, OUTPUT_COLUMN):
                    continue
                seen.add(other[:3])
                # An out named twice is one clash, reported at its first row.
                if other[2] != OUTPUT_COLUMN or other[0] > job.number:
                    clashes.append(((job.number, job.line, job.values[OUTPUT_COLUMN]), other))
    if not clashes:
        return
    (number, line, out), (other, other_line, column, as_written) = clashes[0]
    where = "its own" if other == number else f"row {other} (line {other_line})'s"
    what = (f"also row {other} (line {other_line})'s out" if column == OUTPUT_COLUMN
            else f"{where} {column} input{'' if as_written == out else ' ' + as_written}; writing it would destroy "
                 "that input")
    more = f" (and {len(clashes) - 1} more such clash{'es' if len(clashes) > 2 else ''})" if len(clashes) > 1 else ""
    raise InputError(f"{jobs[0].file}: row {number} (line {line})'s out {out} is {what}{more}; nothing was written")
