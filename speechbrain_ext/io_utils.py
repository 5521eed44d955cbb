"""File helpers: atomic writes (a killed process never leaves a half-written output), ``PathLike``, file digests.

Every manifest, trial list, score file and exported model file goes through ``atomic_write``: the content is
written to a temporary file in the same folder, flushed and fsync-ed, then renamed over the destination, which
POSIX guarantees to be atomic.
"""
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator, Union

PathLike = Union[str, os.PathLike]


@contextlib.contextmanager
def atomic_write(path: PathLike, mode: str = "w", **open_kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; rename it onto ``path`` on success (on an error, ``path`` is untouched).

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> with atomic_write(os.path.join(d, "a.txt")) as f:
    ...     _ = f.write("hello")
    >>> open(os.path.join(d, "a.txt")).read()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
    try:
        with os.fdopen(fd, mode, **open_kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: PathLike, content) -> None:
    """``content`` as indented JSON at ``path``, atomically."""
    with atomic_write(path) as f:
        json.dump(content, f, indent=2)


def atomic_copy(src: PathLike, dst: PathLike) -> None:
    """Copy ``src`` to ``dst`` atomically (temporary file + rename)."""
    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)


def file_digest(path: PathLike):
    """A hashlib SHA-256 object fed with the bytes of a file (``.hexdigest()`` for the hex string)."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256")
