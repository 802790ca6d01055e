"""Orbax checkpoints of a train state plus JSON metadata (config, data position, stage), verified on restore.

What is guaranteed:

* Atomic step directories. Orbax writes each step into a temporary directory and renames it to
  `<directory>/<step>` when complete, so a run killed mid-save (even by SIGKILL) leaves the previous
  checkpoint as the latest readable one.
* An integrity record per step. Once orbax has finalized step N, process 0 writes
  `<directory>/<N>/thflax_integrity.json` listing every file of the step directory with its size and
  sha256 (atomically: a temporary file then `os.replace`). With asynchronous saving this happens in a
  background thread that waits for orbax's finalization and then hashes the files, so the training loop
  is not blocked; the next `save()` (and `wait()`, `close()`, `verify()`, `restore*()`) joins that thread
  first, so at most one step is ever without its record in a live run. Because the record lives inside
  the step directory, orbax's `max_to_keep` deletes it together with its step.
* Verified restore. `restore`, `restore_arrays`, `restore_latest_intact` and `latest_intact_step` check
  every file against the record first; a missing, truncated or overwritten file (and any error orbax
  raises while reading) becomes a one-line `CheckpointError` naming the step, the directory and the file
  -- never an orbax traceback and never silently wrong values.
* Resume from the newest intact step: `restore_latest_intact` walks back from the newest step, skipping
  (and reporting) steps that fail verification or restore.
* Background save failures are reported at once: `check()` (cheap; call it every step) raises a one-line
  `CheckpointError` as soon as an asynchronous save has failed, and `save()`/`wait()`/`close()` raise it
  too. Each failure is raised once.

Steps without an integrity record (written by an older thflax, or a run killed in the short window between
orbax's finalization and the record being written) are restored with a warning and are not verified;
`latest_intact_step` does not count them ("last good" means verified).

In multi-host runs every process calls `save`; orbax coordinates them, process 0 writes the metadata and
the integrity record, and every process reports background save failures.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from thflax.errors import CheckpointError

log = logging.getLogger(__name__)

INTEGRITY_FILE = "thflax_integrity.json"
_TMP_PREFIX = "." + INTEGRITY_FILE + ".tmp"
_FORMAT = 1
_NO_RECORD = "no integrity record"
# Files holding JSON metadata (ours under meta/, orbax's tree / step / sharding metadata).
_METADATA_NAMES = {"metadata", "_METADATA", "_CHECKPOINT_METADATA", "_sharding"}


class CorruptCheckpointError(CheckpointError):
    """A checkpoint step whose files are missing, truncated, overwritten or unreadable."""


_T = TypeVar("_T")


class _ReadLoop(asyncio.SelectorEventLoop):
    """The event loop of one orbax read, torn down properly when the read fails half-way.

    orbax runs each restore in a fresh event loop and closes it as soon as one read fails, while
    tensorstore still has the step's other reads in flight. Closing here first cancels the tasks left
    pending and lets them finish (what `asyncio.run` does, and orbax's `run_until_complete` + `close`
    does not); a read that completes after that posts its result to a loop that no longer exists,
    and that result is dropped: nobody awaits it. Without this, each late completion made tensorstore
    print a 'RuntimeError: Event loop is closed' traceback (dozens after one truncated file).
    """

    def close(self) -> None:
        if not self.is_running() and not self.is_closed():
            pending = [t for t in asyncio.all_tasks(self) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:  # return_exceptions: their failures are retrieved, not logged as "never retrieved"
                self.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        super().close()

    def call_soon_threadsafe(self, callback, *args, context=None):
        try:
            return super().call_soon_threadsafe(callback, *args, context=context)
        except RuntimeError:
            if self.is_closed():  # a late result of a read abandoned by a failed restore (see above)
                return None
            raise


class _ReadLoopPolicy(asyncio.DefaultEventLoopPolicy):
    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        return _ReadLoop()


@contextlib.contextmanager
def _orbax_read() -> Iterator[None]:
    """Around an orbax restore: the event loops it creates are `_ReadLoop`s (orbax makes its own with
    `asyncio.new_event_loop`, so the policy is the one public way in)."""
    old = asyncio.get_event_loop_policy()
    asyncio.set_event_loop_policy(_ReadLoopPolicy())
    try:
        yield
    finally:
        asyncio.set_event_loop_policy(old)


def _one_line(e: BaseException, limit: int = 200) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first[:limit]}" if first else type(e).__name__


def _sha256(path: str) -> tuple[int, str]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return size, h.hexdigest()


def _is_metadata(rel: str) -> bool:
    parts = rel.split("/")
    return parts[0] == "meta" or parts[-1] in _METADATA_NAMES or "array_metadatas" in parts


class Checkpointer:
    """A `ocp.CheckpointManager` for one training stage's directory, with integrity records."""

    def __init__(self, directory: str, max_to_keep: int = 3, async_save: bool = True, read_only: bool = False):
        self.directory = os.path.abspath(directory)
        self.async_save = async_save
        self.read_only = read_only
        try:
            self.manager = ocp.CheckpointManager(
                self.directory,
                options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=async_save,
                                                     create=not read_only, read_only=read_only))
        except Exception as e:  # noqa: BLE001 - orbax raises many kinds
            raise CheckpointError(f"cannot open checkpoint directory {self.directory}: {_one_line(e)}") from e
        self._thread: threading.Thread | None = None
        self._failure: tuple[int, BaseException] | None = None  # set by the background thread
        self._failure_reported = False  # each failure is raised to the caller once

    # ----------------------------------------------------------------------------------- steps

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        """Every finalized (or in-flight) step, oldest first."""
        return sorted(self.manager.all_steps())

    def step_dir(self, step: int) -> str:
        return os.path.join(self.directory, str(int(step)))

    # ------------------------------------------------------------------------------------ save

    def save(self, step: int, state: Any, meta: dict[str, Any]) -> None:
        """Starts saving `state` and `meta` as `step` (returns at once when asynchronous).

        Raises CheckpointError if an earlier asynchronous save failed (before starting this one) or if
        this save cannot start.
        """
        if self.read_only:
            raise CheckpointError(f"checkpoint directory {self.directory} was opened read-only")
        self._settle()
        self._raise_failure()
        self._drain_manager()
        self._failure, self._failure_reported = None, False  # an earlier failure was reported already
        primary = jax.process_index() == 0
        try:
            self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                            meta=ocp.args.JsonSave(meta)), force=True)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"could not save step {step} to {self.directory}: {_one_line(e)}") from e
        if self.async_save:
            # Not a daemon (like orbax's own finalize thread): a process that exits normally still writes it.
            self._thread = threading.Thread(target=self._finish_async, args=(int(step), primary),
                                            name=f"thflax-checkpoint-integrity-{step}", daemon=False)
            self._thread.start()
        else:
            self._finish_sync(int(step), primary)

    def _finish_sync(self, step: int, primary: bool) -> None:
        try:
            if primary:
                self._write_record(step)
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"could not write the integrity record of step {step} in {self.directory}: "
                                  f"{_one_line(e)}") from e

    def _finish_async(self, step: int, primary: bool) -> None:
        """Background thread: waits for orbax to finalize `step`, then writes its integrity record."""
        try:
            self.manager.wait_until_finished()
        except BaseException as e:  # noqa: BLE001 - reported to the main thread by check()
            self._failure = (step, e)
            return
        try:
            if primary:
                self._write_record(step)
        except BaseException as e:  # noqa: BLE001
            self._failure = (step, OSError(f"could not write the integrity record: {_one_line(e)}"))

    def _write_record(self, step: int) -> None:
        """Process 0 only: hashes every file of the finalized step directory into its integrity record."""
        d = self.step_dir(step)
        if not os.path.isdir(d):
            raise FileNotFoundError(f"step directory {d} does not exist after saving")
        files = {}
        for root, dirs, names in os.walk(d):
            dirs.sort()
            for name in sorted(names):
                if root == d and (name == INTEGRITY_FILE or name.startswith(_TMP_PREFIX)):
                    continue
                path = os.path.join(root, name)
                size, digest = _sha256(path)
                files[os.path.relpath(path, d).replace(os.sep, "/")] = {"size": size, "sha256": digest}
        record = {"format": _FORMAT, "writer": "thflax", "step": step, "files": files}
        tmp = os.path.join(d, f"{_TMP_PREFIX}-{os.getpid()}-{threading.get_ident()}")
        with open(tmp, "w") as f:
            json.dump(record, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(d, INTEGRITY_FILE))
        try:  # make the rename durable; best effort (not every filesystem allows opening directories)
            fd = os.open(d, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass

    # ------------------------------------------------------------------------- failure report

    def _settle(self) -> None:
        """Joins the background integrity thread (never raises)."""
        t, self._thread = self._thread, None
        if t is not None:
            t.join()

    def _raise_failure(self) -> None:
        failure = self._failure
        if failure is None or self._failure_reported:
            return
        step, e = failure
        self._failure_reported = True
        raise CheckpointError(f"asynchronous save of step {step} to {self.directory} failed: {_one_line(e)}") from e

    def _drain_manager(self) -> None:
        """Lets orbax re-raise (once per thread) a failure the background thread already recorded."""
        try:
            self.manager.wait_until_finished()
        except Exception as e:  # noqa: BLE001
            if self._failure is None or self._failure[1] is not e:
                self._failure, self._failure_reported = (self.latest_step() or -1, e), False
            self._raise_failure()

    def check(self) -> None:
        """Raises CheckpointError (one line) if a background save has failed; cheap, never blocks."""
        t = self._thread
        if t is not None and not t.is_alive():
            self._settle()
        self._raise_failure()

    def wait(self) -> None:
        """Waits for the pending save and its integrity record; raises CheckpointError if it failed."""
        self._settle()
        self._raise_failure()
        self._drain_manager()

    def close(self) -> None:
        self._settle()
        try:
            self._drain_manager()
        finally:
            self.manager.close()
        self._raise_failure()

    # ---------------------------------------------------------------------------------- verify

    def _load_record(self, step: int) -> tuple[dict | None, str | None]:
        d = self.step_dir(step)
        if not os.path.isdir(d):
            return None, f"step {step} does not exist in {self.directory}"
        path = os.path.join(d, INTEGRITY_FILE)
        if not os.path.exists(path):
            return None, (f"step {step} in {self.directory} has {_NO_RECORD} (written by an older thflax, or the "
                          "run stopped before it was written); not verified")
        try:
            with open(path) as f:
                record = json.load(f)
            files = record["files"]
            if not isinstance(files, dict):
                raise ValueError("'files' is not a mapping")
        except Exception as e:  # noqa: BLE001
            return None, (f"checkpoint step {step} in {self.directory} is corrupt: its integrity record "
                          f"{step}/{INTEGRITY_FILE} is unreadable ({_one_line(e)})")
        return record, None

    def _check_files(self, step: int, record: dict, only_metadata: bool = False) -> str | None:
        d = self.step_dir(step)
        for rel, want in sorted(record["files"].items()):
            if only_metadata and not _is_metadata(rel):
                continue
            path = os.path.join(d, *rel.split("/"))
            what = (f"metadata of step {step} in {self.directory} is unreadable" if _is_metadata(rel)
                    else f"checkpoint step {step} in {self.directory} is corrupt")
            name = f"{step}/{rel}"
            try:
                size = os.path.getsize(path)
            except OSError:
                return f"{what}: file {name} is missing"
            if size != want["size"]:
                if size < want["size"]:
                    return f"{what}: file {name} is truncated ({size} of {want['size']} bytes)"
                return f"{what}: file {name} has {size} bytes, the integrity record says {want['size']}"
            try:
                _, digest = _sha256(path)
            except OSError as e:
                return f"{what}: file {name} cannot be read ({_one_line(e)})"
            if digest != want["sha256"]:
                return f"{what}: file {name} was overwritten (its sha256 differs from the integrity record)"
        return None

    def _verify(self, step: int, only_metadata: bool = False) -> tuple[str, str | None]:
        """('ok', None) | ('unverified', warning) | ('broken', reason)."""
        self._settle()
        record, reason = self._load_record(step)
        if record is None:
            return ("unverified" if _NO_RECORD in reason else "broken"), reason
        reason = self._check_files(step, record, only_metadata)
        return ("broken", reason) if reason else ("ok", None)

    def verify(self, step: int) -> str | None:
        """None if every file of `step` matches its integrity record, else a one-line reason.

        The reason names the broken file (missing / truncated / wrong size / overwritten), or says that
        the step does not exist or has no (readable) integrity record.
        """
        return self._verify(int(step))[1]

    def latest_intact_step(self) -> int | None:
        """The newest step that passes `verify` (steps without an integrity record do not count)."""
        for step in reversed(self.all_steps()):
            if self._verify(step)[0] == "ok":
                return step
        return None

    # --------------------------------------------------------------------------------- restore

    def _resolve(self, step: int | None) -> int:
        self._settle()
        step = self.latest_step() if step is None else int(step)
        if step is None:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        return step

    def _checked(self, step: int) -> tuple[bool, str | None]:
        """Verifies `step`: raises CorruptCheckpointError; (True, None) if verified, else (False, the warning).

        The caller logs the warning once the step has restored: a step that then fails is reported by its
        error alone (which says it was not verified), one line rather than two.
        """
        status, reason = self._verify(step)
        if status == "broken":
            raise CorruptCheckpointError(reason)
        return status == "ok", reason

    def _restore_meta(self, step: int) -> dict[str, Any]:
        try:
            with _orbax_read():
                return self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
        except Exception as e:  # noqa: BLE001
            raise CorruptCheckpointError(f"metadata of step {step} in {self.directory} is unreadable: "
                                         f"{_one_line(e)}") from e

    def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict[str, Any]]:
        """Restores `step` (default: the latest) into the structure, shapes, dtypes and shardings of `target`.

        The step is verified first. Raises CorruptCheckpointError (a CheckpointError) naming the broken file
        or the step, and CheckpointError "... does not match this configuration's model" when a verified
        step has another structure than `target`.
        """
        step = self._resolve(step)
        verified, unverified = self._checked(step)
        meta = self._restore_meta(step)
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        try:
            with _orbax_read():
                out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract)))
        except Exception as e:  # noqa: BLE001 - a corrupt file can raise anything
            if isinstance(e, json.JSONDecodeError):
                raise CorruptCheckpointError(f"metadata of step {step} in {self.directory} is unreadable: "
                                             f"{_one_line(e)}") from e
            if verified and isinstance(e, (ValueError, KeyError, TypeError)):
                raise CheckpointError(f"checkpoint {self.directory} step {step} does not match this "
                                      f"configuration's model: {_one_line(e)}") from e
            how = "" if verified else " (not verified: corrupt, or saved from another configuration)"
            raise CorruptCheckpointError(f"checkpoint {self.directory} step {step} could not be restored{how}: "
                                         f"{_one_line(e)}") from e
        if unverified:
            log.warning("%s", unverified)
        return out.state, meta

    def restore_newest(self, restore_step: Callable[[int], _T], on_skip: Callable[[int, str], None] | None = None
                       ) -> tuple[_T, int, list[tuple[int, str]]]:
        """`restore_step(step)` of the newest step it restores: (its result, the step, skipped).

        The one fallback for training and inference alike: `restore_step` is `restore`, `restore_arrays` or
        `restore_meta` for one step; a step it fails with CorruptCheckpointError (fails verification, or
        orbax cannot read it) is skipped, passed to `on_skip(step, reason)` at once and listed in `skipped`
        as (step, reason), newest first (nothing is logged here: the caller words it). Any other error
        (e.g. another configuration's model) is raised at once: an older step would not do better. Raises
        CheckpointError (one line) if there is no checkpoint or no step restores.
        """
        self._settle()
        steps = self.all_steps()
        if not steps:
            raise CheckpointError(f"no checkpoint in {self.directory}")
        skipped: list[tuple[int, str]] = []
        for step in reversed(steps):
            try:
                return restore_step(step), step, skipped
            except CorruptCheckpointError as e:
                skipped.append((step, str(e)))
                if on_skip is not None:
                    on_skip(step, str(e))
        newest, reason = skipped[0]
        more = f"; {len(skipped) - 1} older step(s) also failed" if len(skipped) > 1 else ""
        raise CheckpointError(f"no intact checkpoint in {self.directory}: newest step {newest}: {reason}{more}")

    def restore_latest_intact(self, target: Any) -> tuple[Any, dict[str, Any], int, list[tuple[int, str]]]:
        """Restores the newest step that verifies and restores; returns (state, meta, step, skipped).

        `skipped` lists (step, reason) for the newer steps that failed verification or restore (each is
        also logged as a warning). Steps without an integrity record are restored unverified (with a
        warning). A verified step that does not match `target` raises at once (an older step would not
        match either). Raises CheckpointError if there is no checkpoint or none is intact.
        """
        (state, meta), step, skipped = self.restore_newest(
            lambda s: self.restore(target, s),
            on_skip=lambda s, why: log.warning("skipping checkpoint step %d: %s", s, why))
        if skipped:
            log.warning("restored step %d of %s after skipping newer steps %s", step, self.directory,
                        ", ".join(str(s) for s, _ in skipped))
        return state, meta, step, skipped

    def quarantine(self, step: int) -> str:
        """Moves a damaged step out of the way (to `<directory>_damaged/<step>`), so training can save that
        step number again; returns where it went. Nothing is deleted: the files stay for inspection."""
        import shutil
        import time

        self._settle()
        dest_root = self.directory.rstrip(os.sep) + "_damaged"
        os.makedirs(dest_root, exist_ok=True)
        dest = os.path.join(dest_root, f"{step}-{time.strftime('%Y%m%d-%H%M%S')}")
        shutil.move(self.step_dir(step), dest)
        self.manager.reload()
        return dest

    def restore_meta(self, step: int | None = None) -> dict[str, Any]:
        """The JSON metadata of `step` (default: the latest); only the metadata files are verified."""
        step = self._resolve(step)
        status, reason = self._verify(step, only_metadata=True)
        if status == "broken":
            raise CorruptCheckpointError(reason)
        return self._restore_meta(step)

    def restore_arrays(self, step: int | None = None,
                       skip: tuple[str, ...] = ("opt_state",)) -> tuple[dict[str, Any], dict[str, Any]]:
        """Verified restore of `step` (default: the latest) without a target: (nested dicts of numpy arrays, meta).

        For inference code that must not build training objects: the saved tree's top-level entries named in
        `skip` (by default the optimiser state) are not read at all (orbax partial restore); everything else
        (step, params, batch_stats, ema_params, rng) comes back as numpy arrays in dicts keyed like the saved
        train state. Entries saved as None come back as None.
        """
        step = self._resolve(step)
        verified, unverified = self._checked(step)
        meta = self._restore_meta(step)
        path = epath.Path(self.step_dir(step)) / "state"
        with _orbax_read():
            handler = ocp.PyTreeCheckpointHandler()
            try:
                tree = handler.metadata(path).tree
                if not isinstance(tree, dict):
                    raise ValueError(f"the saved state is a {type(tree).__name__}, not a mapping")
                kept = {k: v for k, v in tree.items() if k not in skip}
                has_array = lambda x: hasattr(x, "shape")  # noqa: E731 - an orbax ArrayMetadata
                wanted = {k: v for k, v in kept.items() if jax.tree.leaves(v, is_leaf=has_array)}
                item = jax.tree.map(lambda m: None if m is None else np.zeros(m.shape, m.dtype), wanted,
                                    is_leaf=lambda x: x is None or has_array(x))
                restore_args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
                out = handler.restore(path, args=ocp.args.PyTreeRestore(item=item, restore_args=restore_args,
                                                                         partial_restore=True)) if wanted else {}
            except Exception as e:  # noqa: BLE001
                how = "" if verified else " (not verified: it has no integrity record)"
                raise CorruptCheckpointError(f"checkpoint {self.directory} step {step} could not be restored{how}: "
                                             f"{_one_line(e)}") from e
            finally:
                handler.close()
        if unverified:
            log.warning("%s", unverified)
        state = {k: out.get(k, v) for k, v in kept.items()}  # entries without arrays (None, {}) as saved
        return state, meta
