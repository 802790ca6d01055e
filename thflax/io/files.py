"""Writing files a user receives: one-line causes for failures, the umask's mode, atomic replacement.

Shared by the video writer, the export bundle, generation's caches and the perceptual network, so an
output is either complete or absent (never half-written) and a failure names its cause in one line.
"""

from __future__ import annotations

import errno
import os
import tempfile

from thflax.errors import OutputError

#: Environment variable naming the project's cache folder (default ~/.cache/thflax): generation's
#: start-up caches and the synthetic corpus' fetched portraits live under it.
CACHE_ENV = "THFLAX_CACHE_DIR"

#: errno -> the cause a user reads ("cannot write PATH: <cause>").
CAUSES = {
    errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "read-only file system",
    errno.EACCES: "folder not writable",
    errno.EPERM: "folder not writable",
    errno.ENOENT: "folder does not exist",
    errno.ENOTDIR: "a parent of it is not a folder",
    errno.EISDIR: "it is a directory",
}


def output_error(path: str, err: OSError) -> OutputError:
    """One line naming why `path` could not be written, from an OSError's errno."""
    cause = CAUSES.get(err.errno) or (err.strerror or str(err)).lower()
    folder = os.path.dirname(os.path.abspath(path))
    if err.errno == errno.ENOENT and os.path.isdir(folder):
        # The folder is there but refuses new files: a virtual file system such as /proc or /sys.
        cause = f"folder {folder} cannot take new files"
    return OutputError(f"cannot write {path}: {cause}")


def cache_dir(sub: str = "") -> str:
    """The project's cache folder, $THFLAX_CACHE_DIR else ~/.cache/thflax, or its subfolder `sub`.

    Read at each call (not at import), so a test or a caller that sets the variable later is obeyed.
    """
    root = os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "thflax")
    return os.path.join(root, sub) if sub else root


def umask() -> int:
    """The process umask (read without changing it where /proc allows: changing it races other threads)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def unwritable_cause(folder: str) -> str:
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):
        pass
    return f"folder {folder} not writable"


def check_folder(out: str, creates_folder: bool = False) -> None:
    """Raises OutputError (one line) unless `out` names a file whose folder exists and is writable;
    called before the work, so a bad path fails in a second, not after the job. `creates_folder`: `out`
    is a folder the caller makes (an export bundle), so an existing one is the caller's to refuse or replace."""
    if os.path.isdir(out) and not creates_folder:
        raise OutputError(f"output {out} is a directory; give a file name")
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.exists(folder):
        raise OutputError(f"cannot write {out}: folder {folder} does not exist")
    if not os.path.isdir(folder):
        raise OutputError(f"cannot write {out}: {folder} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {out}: {unwritable_cause(folder)}")
    # os.access says yes to root everywhere and knows nothing of folders that take no files (/proc):
    # creating (and removing) an empty hidden file is the one test that answers, before the work.
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".thflax-probe-")
    except OSError as e:
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise OutputError(f"cannot write {out}: {unwritable_cause(folder)}") from None
        raise output_error(out, e) from None
    os.close(fd)
    try:
        os.remove(probe)
    except OSError:
        pass


def atomic_write(path: str, data: bytes) -> None:
    """Writes `data` to `path` through a temporary file in the same folder, renamed into place: readers
    (and concurrent runs) see the old file or the whole new one; a failure leaves no temporary file and
    raises OutputError. The file gets the mode a new file has under the umask (mkstemp's is 0600)."""
    try:
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)), prefix=".tmp-")
    except OSError as e:
        raise output_error(path, e) from e
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            os.chmod(tmp, 0o666 & ~umask())
        except OSError:
            pass  # some file systems (FAT, network shares) refuse chmod; the file itself is fine
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.remove(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise output_error(path, e) from e
        raise
