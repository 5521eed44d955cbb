"""Voiceprint store: enrolled speakers in one SQLite file (standard library only).

Schema (``PRAGMA application_id`` = :data:`APPLICATION_ID`, ``PRAGMA
user_version`` = :data:`SCHEMA_VERSION`, so a database that is not ours is
recognised before it is touched)::

    meta(key TEXT PRIMARY KEY, value TEXT)         model_hash, model_name, created_at
    speakers(speaker_id TEXT PRIMARY KEY, voiceprint BLOB, num_utterances INT,
             created_at TEXT, updated_at TEXT)     voiceprint: float32 [D]
    embeddings(id INTEGER PRIMARY KEY, speaker_id TEXT, embedding BLOB,
               source TEXT, created_at TEXT)        embedding: float32 [D], L2-normalised

The voiceprint of a speaker is the mean of its L2-normalised utterance
embeddings::

    v = 1/N * sum_i e_i / |e_i|        e_i: [D], v: [D]

and is recomputed from all the stored embeddings of the speaker in the same
transaction that adds them, so it always matches them.

Safety:

- **One model per database.** The database records the hash of the model that
  made its embeddings (:func:`model_hash`); opening it with another model
  raises :class:`VoiceprintError`, so voiceprints of different models are
  never compared.
- **WAL journal**: readers (verification) proceed while one writer enrols.
- **Atomic enrolment**: each write runs in one ``BEGIN IMMEDIATE`` transaction,
  so a process killed mid-enrolment leaves the old voiceprint or the new
  one, never a mixture.
- A file whose permissions grant no write access is refused for writing, even
  to root.
"""
import contextlib
import hashlib
import os
import sqlite3
import time
from pathlib import Path
from typing import Iterator, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

PathLike = Union[str, os.PathLike]
APPLICATION_ID = 0x53425650  # "SBVP": speechbrain_ext voiceprint store
SCHEMA_VERSION = 1
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer's transaction
HASHED_FILES = ("embedding_model.ckpt", "hyperparams.yaml")

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE speakers (
    speaker_id TEXT PRIMARY KEY,
    voiceprint BLOB NOT NULL,
    num_utterances INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE embeddings (
    id INTEGER PRIMARY KEY,
    speaker_id TEXT NOT NULL REFERENCES speakers(speaker_id) ON DELETE CASCADE,
    embedding BLOB NOT NULL,
    source TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX embeddings_speaker ON embeddings(speaker_id);
"""
_TABLES = {"meta", "speakers", "embeddings"}


class VoiceprintError(ValueError):
    """A problem with the voiceprint database or a request to it; the message is one line."""


class SpeakerInfo(NamedTuple):
    """One enrolled speaker, as listed by :meth:`VoiceprintStore.speakers`."""

    speaker_id: str
    num_utterances: int
    created_at: str
    updated_at: str


def model_hash(model_folder: PathLike) -> str:
    """SHA-256 of a model folder's ``embedding_model.ckpt`` and ``hyperparams.yaml``.

    The yaml's ``pretrained_path:`` line is left out: it records where the
    folder was at export time, and a moved copy of a model is the same model.

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "embedding_model.ckpt").write_bytes(b"weights")
    >>> _ = (d / "hyperparams.yaml").write_text("pretrained_path: /a\\nemb_dim: 4\\n")
    >>> h = model_hash(d)
    >>> _ = (d / "hyperparams.yaml").write_text("pretrained_path: /moved\\nemb_dim: 4\\n")
    >>> model_hash(d) == h, len(h)
    (True, 64)
    """
    digest = hashlib.sha256()
    with open(Path(model_folder, HASHED_FILES[0]), "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    yaml_lines = Path(model_folder, HASHED_FILES[1]).read_text(encoding="utf-8").splitlines()
    digest.update("\n".join(l for l in yaml_lines if not l.startswith("pretrained_path:")).encode())
    return digest.hexdigest()


def _now() -> str:
    """UTC timestamp, ISO 8601 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _describe(name: Optional[str], digest: Optional[str]) -> str:
    """``name (hash 0123456789ab)`` for messages."""
    return f"{name or '?'} (hash {(digest or '?')[:12]})"


def _normalise(embeddings: np.ndarray) -> np.ndarray:
    """Rows of ``embeddings`` [N, D] divided by their L2 norm, as float32."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    if not np.isfinite(embeddings).all() or (norms == 0).any():
        raise VoiceprintError("an embedding is zero or has NaN/inf values; not stored")
    return (embeddings / norms).astype(np.float32)


class VoiceprintStore:
    """Speakers, their utterance embeddings and voiceprints in one SQLite file.

    Arguments
    ---------
    path : path
        Database file.
    model_hash : str, optional
        :func:`model_hash` of the model the caller embeds with. Required to
        create a database (it is recorded) and to save embeddings; when given,
        a database made with another model is refused. ``None`` (listing,
        removal) skips the check.
    model_name : str
        Shown in the mismatch message (e.g. the model folder).
    create : bool
        Create the database if the file does not exist (or is empty);
        otherwise a missing file is an error.

    Raises
    ------
    VoiceprintError
        Missing file, a file that is not a voiceprint database of this schema,
        or a database made with another model.

    Example
    -------
    >>> import tempfile, os
    >>> path = os.path.join(tempfile.mkdtemp(), "vp.db")
    >>> with VoiceprintStore(path, model_hash="abc", create=True) as store:
    ...     store.save("alice", np.array([[3.0, 4.0], [0.0, 1.0]]), ["a1.wav", "a2.wav"])
    ...     store.voiceprint("alice").astype(float).round(4).tolist()  # mean of [0.6, 0.8] and [0, 1]
    2
    [0.3, 0.9]
    >>> VoiceprintStore(path, model_hash="xyz")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    speechbrain_ext.voiceprints.VoiceprintError: ...vp.db: its voiceprints were made by model ? (hash abc), not by ...
    """

    def __init__(self, path: PathLike, model_hash: Optional[str] = None, model_name: str = "",
                 create: bool = False) -> None:
        self.path = Path(path)
        self.model_hash = model_hash
        new = not self.path.exists() or (self.path.is_file() and self.path.stat().st_size == 0)
        if new and not create:
            raise VoiceprintError(f"{path}: no such voiceprint database (enrol a speaker to create it)")
        if new and model_hash is None:
            raise VoiceprintError(f"{path}: a new voiceprint database needs a model")
        if self.path.is_dir():
            raise VoiceprintError(f"{path}: is a folder, not a voiceprint database")
        try:
            self.connection = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as err:
            raise VoiceprintError(f"{path}: cannot open the database ({err})") from None
        try:
            self.connection.execute("PRAGMA foreign_keys = ON")
            if new:
                self._initialise(model_name)
            self._check(model_name)
        except sqlite3.DatabaseError as err:
            self.connection.close()
            raise VoiceprintError(f"{path}: not a speechbrain_ext voiceprint database ({err})") from None
        except VoiceprintError:
            self.connection.close()
            raise

    # ------------------------------------------------------------ opening
    def _initialise(self, model_name: str) -> None:
        """Create the schema (WAL mode, markers, model hash) in one transaction."""
        self._check_writable()
        self.connection.execute("PRAGMA journal_mode = WAL")
        with self._transaction():
            if self._pragma("application_id") == APPLICATION_ID:
                return  # another process created it first
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self.connection.execute(statement)
            self.connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self.connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("model_hash", self.model_hash), ("model_name", model_name), ("created_at", _now())])

    def _check(self, model_name: str) -> None:
        """Refuse a file that is not ours, of another schema version, or of another model."""
        app_id, version = self._pragma("application_id"), self._pragma("user_version")
        if app_id != APPLICATION_ID:
            raise VoiceprintError(f"{self.path}: not a speechbrain_ext voiceprint database "
                                  f"(SQLite application_id {app_id}, expected {APPLICATION_ID})")
        if version != SCHEMA_VERSION:
            raise VoiceprintError(f"{self.path}: voiceprint schema version {version}, this code reads "
                                  f"version {SCHEMA_VERSION}")
        tables = {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not _TABLES <= tables:
            missing = ", ".join(sorted(_TABLES - tables))
            raise VoiceprintError(f"{self.path}: voiceprint database lacks table(s) {missing}")
        meta = dict(self.connection.execute("SELECT key, value FROM meta"))
        if self.model_hash is not None and meta.get("model_hash") != self.model_hash:
            made_by = _describe(meta.get("model_name"), meta.get("model_hash"))
            raise VoiceprintError(f"{self.path}: its voiceprints were made by model {made_by}, not by model "
                                  f"{_describe(model_name, self.model_hash)}; use that model or another database")
        self.meta = meta

    def _pragma(self, name: str) -> int:
        return int(self.connection.execute(f"PRAGMA {name}").fetchone()[0])

    def _check_writable(self) -> None:
        """Refuse to write a file (or, for a new one, a folder) without write permission."""
        target = self.path if self.path.exists() else self.path.absolute().parent
        mode = target.stat().st_mode
        if not os.access(target, os.W_OK) or not mode & 0o222:
            raise VoiceprintError(f"{self.path}: the voiceprint database is read-only "
                                  f"({'file' if target == self.path else 'folder'} permissions {oct(mode & 0o777)})")

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT``, or ``ROLLBACK`` if anything fails."""
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            yield self.connection
            self.connection.execute("COMMIT")
        except BaseException as exc:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise VoiceprintError(f"{self.path}: cannot write the voiceprint database ({exc})") from None
            raise

    def save(self, speaker_id: str, embeddings: np.ndarray, sources: Sequence[str], replace: bool = True) -> int:
        """Store utterance embeddings of a speaker and recompute its voiceprint, atomically.

        Arguments
        ---------
        speaker_id : str
            Non-empty speaker name.
        embeddings : np.ndarray
            Utterance embeddings, shape ``[N, D]``, N >= 1 (normalised here).
        sources : sequence of str
            Where each embedding came from (file path or a label), ``[N]``.
        replace : bool
            True: the speaker's previous embeddings are dropped (re-enrolment);
            False: these are added to them.

        Returns
        -------
        int
            Number of embeddings the voiceprint now averages.
        """
        if self.model_hash is None:
            raise VoiceprintError(f"{self.path}: saving embeddings needs the model's hash")
        if not speaker_id or speaker_id != speaker_id.strip():
            raise VoiceprintError(f"speaker id {speaker_id!r}: must be non-empty, without surrounding spaces")
        embeddings = np.asarray(embeddings, dtype=np.float64)
        if embeddings.ndim != 2 or len(embeddings) == 0 or len(embeddings) != len(sources):
            raise VoiceprintError(f"need embeddings [N, D] with N >= 1 and one source each, got shape "
                                  f"{embeddings.shape} and {len(sources)} source(s)")
        rows = _normalise(embeddings)
        self._check_writable()
        now = _now()
        with self._transaction() as db:
            old = db.execute("SELECT created_at FROM speakers WHERE speaker_id = ?", (speaker_id,)).fetchone()
            if old is not None and replace:
                db.execute("DELETE FROM embeddings WHERE speaker_id = ?", (speaker_id,))
            db.execute("INSERT OR IGNORE INTO speakers VALUES (?, ?, 0, ?, ?)",
                       (speaker_id, b"", now, now))
            db.executemany("INSERT INTO embeddings (speaker_id, embedding, source, created_at) VALUES (?, ?, ?, ?)",
                           [(speaker_id, row.tobytes(), str(src), now) for row, src in zip(rows, sources)])
            stored = self._embedding_matrix(speaker_id)
            voiceprint = stored.astype(np.float64).mean(axis=0).astype(np.float32)
            db.execute("UPDATE speakers SET voiceprint = ?, num_utterances = ?, updated_at = ? WHERE speaker_id = ?",
                       (voiceprint.tobytes(), len(stored), now, speaker_id))
        return len(stored)

    def remove(self, speaker_id: str) -> None:
        """Delete a speaker with its embeddings; unknown ids raise :class:`VoiceprintError`."""
        self._check_writable()
        with self._transaction() as db:
            if db.execute("DELETE FROM speakers WHERE speaker_id = ?", (speaker_id,)).rowcount == 0:
                raise VoiceprintError(self._unknown(speaker_id))

    # ------------------------------------------------------------ reading
    def _unknown(self, speaker_id: str) -> str:
        if self.count() == 0:
            return f"{self.path}: no speakers are enrolled"
        return f"unknown speaker id {speaker_id!r} (not enrolled in {self.path})"

    def _embedding_matrix(self, speaker_id: str) -> np.ndarray:
        blobs = self.connection.execute("SELECT embedding FROM embeddings WHERE speaker_id = ? ORDER BY id",
                                        (speaker_id,)).fetchall()
        return np.stack([np.frombuffer(b, dtype=np.float32) for (b,) in blobs]) if blobs else np.zeros((0, 0))

    def embeddings(self, speaker_id: str) -> np.ndarray:
        """The speaker's stored utterance embeddings (L2-normalised), shape ``[N, D]``."""
        matrix = self._embedding_matrix(speaker_id)
        if matrix.size == 0:
            raise VoiceprintError(self._unknown(speaker_id))
        return matrix

    def voiceprint(self, speaker_id: str) -> np.ndarray:
        """The speaker's voiceprint, float32 ``[D]``; unknown ids raise :class:`VoiceprintError`."""
        row = self.connection.execute("SELECT voiceprint FROM speakers WHERE speaker_id = ?", (speaker_id,)).fetchone()
        if row is None:
            raise VoiceprintError(self._unknown(speaker_id))
        return np.frombuffer(row[0], dtype=np.float32).copy()

    def voiceprints(self) -> Tuple[List[str], np.ndarray]:
        """All speaker ids (sorted) and their voiceprints ``[S, D]``; an empty store raises."""
        rows = self.connection.execute("SELECT speaker_id, voiceprint FROM speakers ORDER BY speaker_id").fetchall()
        if not rows:
            raise VoiceprintError(f"{self.path}: no speakers are enrolled")
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.float32).reshape(len(rows), -1)
        return [spk for spk, _ in rows], matrix

    def speakers(self) -> List[SpeakerInfo]:
        """Every enrolled speaker, sorted by id."""
        return [SpeakerInfo(*row) for row in self.connection.execute(
            "SELECT speaker_id, num_utterances, created_at, updated_at FROM speakers ORDER BY speaker_id")]

    def count(self) -> int:
        """Number of enrolled speakers."""
        return int(self.connection.execute("SELECT COUNT(*) FROM speakers").fetchone()[0])

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "VoiceprintStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
