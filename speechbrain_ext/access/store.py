"""Voiceprint store: enrolled speakers and an audit trail in one SQLite file (standard library only).

Schema: ``_SCHEMA`` (version 1: ``meta`` holds model_hash, model_name and created_at; ``speakers`` a voiceprint,
float32 [D], per speaker; ``embeddings`` the utterance embeddings, float32 [D], L2-normalised), then ``_UPGRADES``
(version 2: ``events``, the audit trail, see :class:`Event`; version 3: ``challenges``, the one-time prompts, see
:class:`Challenge`, and the events' ``prompt``, ``recognised`` and ``nonce``). ``PRAGMA application_id`` = :data:`APPLICATION_ID` and
``PRAGMA user_version`` = :data:`SCHEMA_VERSION`, so a database that is not ours is recognised before it is touched.

The voiceprint of a speaker is the mean of its L2-normalised utterance embeddings::

    v = 1/N * sum_i e_i / |e_i|        e_i: [D], v: [D]

and is recomputed from all the stored embeddings of the speaker in the same transaction that adds them, so it
always matches them.

Safety:

- **One model per database.** The database records the hash of the model that made its embeddings
  (``model_folder.model_hash``); opening it with another model raises :class:`VoiceprintError`, so voiceprints of
  different models are never compared.
- **Private files.** The database is created with mode 0600 (less the umask), and SQLite gives its ``-wal`` and
  ``-shm`` the database's mode. Opening a database that other users can access logs one warning.
- **Nothing half-made.** A new database is created by its first write, in that write's transaction: a store opened
  with ``create=True`` leaves no file until something is saved. An SQLite file without any schema (e.g. left by a
  crash during that first write) counts as empty and is initialised.
- **Erasure.** Connections run with ``PRAGMA secure_delete = ON`` (deleted rows are overwritten with zeros), and a
  transaction that deleted rows (removal, re-enrolment) is followed by ``PRAGMA wal_checkpoint(TRUNCATE)``, so no
  copy stays in the ``-wal`` file.
- **WAL journal**: readers (verification) proceed while one writer enrols.
- **Atomic writes**: each write runs in one ``BEGIN IMMEDIATE`` transaction, so a process killed mid-enrolment
  leaves the old voiceprint or the new one, never a mixture, and committed events are never lost. Two writers
  queue (for up to :data:`BUSY_TIMEOUT_S`) instead of failing.
- **Upgrades**: a database of an older schema (1: no ``events``; 2: no ``challenges``) is upgraded in one
  transaction when opened, or refused if the file is read-only.
- A file whose permissions grant no write access is refused for writing, even to root.
"""
import contextlib
import dataclasses
import logging
import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Dict, Iterator, List, NamedTuple, Optional, Sequence, Set, Tuple

import numpy as np

from speechbrain_ext import scoring
from speechbrain_ext.io_utils import PathLike, file_digest

APPLICATION_ID = 0x53425650  # "SBVP": speechbrain_ext voiceprint store
SCHEMA_VERSION = 3
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another writer's transaction
FILE_MODE = 0o600  # database, -wal and -shm: owner only
logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE speakers (speaker_id TEXT PRIMARY KEY, voiceprint BLOB NOT NULL, num_utterances INTEGER NOT NULL,
                       created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE embeddings (id INTEGER PRIMARY KEY, speaker_id TEXT NOT NULL REFERENCES speakers(speaker_id)
                         ON DELETE CASCADE, embedding BLOB NOT NULL, source TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX embeddings_speaker ON embeddings(speaker_id);
"""
# _UPGRADES[v]: the statements that turn schema version v into v + 1; a new database is _SCHEMA then all of them.
_UPGRADES = {1: """
CREATE TABLE events (id INTEGER PRIMARY KEY, time TEXT NOT NULL, command TEXT NOT NULL, speaker_id TEXT, score REAL,
                     threshold REAL, decision TEXT NOT NULL, error TEXT, audio_sha256 TEXT, model_hash TEXT NOT NULL);
CREATE INDEX events_speaker ON events(speaker_id, time);
CREATE INDEX events_audio ON events(audio_sha256);
""", 2: """
CREATE TABLE challenges (nonce TEXT PRIMARY KEY, speaker_id TEXT NOT NULL REFERENCES speakers(speaker_id)
                         ON DELETE CASCADE, digits TEXT NOT NULL, issued_at REAL NOT NULL, expires_at REAL NOT NULL,
                         used_at REAL);
CREATE INDEX challenges_speaker ON challenges(speaker_id);
ALTER TABLE events ADD COLUMN prompt TEXT;
ALTER TABLE events ADD COLUMN recognised TEXT;
ALTER TABLE events ADD COLUMN nonce TEXT;
"""}
_TABLES = {"meta", "speakers", "embeddings", "events", "challenges"}
_warned_paths: Set[str] = set()  # databases already reported as open to other users


class VoiceprintError(ValueError):
    """A problem with the voiceprint database or a request to it; the message is one line."""


class UnknownSpeaker(VoiceprintError):
    """A request for a speaker id that is not enrolled (or for any speaker while none is)."""


class SpeakerInfo(NamedTuple):
    """One enrolled speaker, as listed by :meth:`VoiceprintStore.speakers`."""

    speaker_id: str
    num_utterances: int
    created_at: str
    updated_at: str


class Challenge(NamedTuple):
    """A one-time prompt (table ``challenges``): ``speaker_id`` must say ``digits`` before ``expires_at``.

    ``nonce`` names it (URL-safe text); ``expires_at`` is a Unix time, seconds.
    """

    nonce: str
    speaker_id: str
    digits: str
    expires_at: float


@dataclasses.dataclass
class Event:
    """One row of the audit trail (table ``events``). No audio is stored, only its SHA-256.

    ``time`` (UTC, :func:`utc_iso`), ``model_hash`` (the database's) and ``id`` (the row's) are filled in by
    :meth:`VoiceprintStore.log_event`.
    """

    command: str  # enroll, verify, identify, remove or challenge
    speaker_id: Optional[str] = None  # the claimed, enrolled, removed or prompted id; for identify, the best match
    decision: str = ""  # claims: accept, reject or a refusal (speechbrain_ext.access.audit.REFUSALS); enrolled,
    #                     removed, issued (challenge); error for any failed command
    score: Optional[float] = None  # the claim's score
    threshold: Optional[float] = None  # ... and the threshold it was held to
    error: Optional[str] = None  # the one-line error message when decision is error
    audio_sha256: Optional[str] = None  # hex; for enroll, one per file, space-separated, "-" for an unreadable file
    time: str = ""
    model_hash: str = ""
    prompt: Optional[str] = None  # the digits of the challenge (issued, or of a prompted claim's own nonce)
    recognised: Optional[str] = None  # the digits the recogniser heard in a prompted claim
    nonce: Optional[str] = None  # the challenge issued, or handed in with a claim
    id: Optional[int] = None  # the row id


_EVENT_COLUMNS = ", ".join(field.name for field in dataclasses.fields(Event))
_INSERT_EVENT = f"INSERT INTO events ({_EVENT_COLUMNS}) VALUES ({', '.join('?' * len(dataclasses.fields(Event)))})"


def audio_sha256(path: PathLike) -> Optional[str]:
    """SHA-256 (hex) of an audio file's bytes; None if it cannot be read (the audio check says why)."""
    try:
        return file_digest(path).hexdigest()
    except OSError:
        return None


def utc_iso(moment: datetime) -> str:
    """``moment`` in UTC, ISO 8601 to the second: the format of every time in the database."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _now() -> str:
    """The current UTC time, as :func:`utc_iso` writes it."""
    return utc_iso(datetime.now(timezone.utc))


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
    """Speakers, their utterance embeddings and voiceprints, and the audit trail, in one SQLite file.

    ``model_hash`` (``model_folder.model_hash`` of the model the caller embeds with) is required to create a
    database (it is recorded) and to save embeddings; when given, a database made with another model is refused
    (the message names ``model_name``, e.g. the model folder); None (listing, removal) skips the check. With
    ``create``, the first write creates the database if the file does not exist (or is an SQLite file without any
    schema) and until then the store reads as empty; otherwise a missing file is an error.

    Example
    -------
    >>> import tempfile, os
    >>> with VoiceprintStore(os.path.join(tempfile.mkdtemp(), "vp.db"), model_hash="abc", create=True) as store:
    ...     store.save("alice", np.array([[3.0, 4.0], [0.0, 1.0]]), ["a1.wav", "a2.wav"])
    ...     store.voiceprint("alice").astype(float).round(4).tolist()  # mean of [0.6, 0.8] and [0, 1]
    2
    [0.3, 0.9]
    """

    def __init__(self, path: PathLike, model_hash: Optional[str] = None, model_name: str = "", create: bool = False):
        self.path, self.model_hash, self.model_name = Path(path), model_hash, model_name
        self.connection: Optional[sqlite3.Connection] = None  # None until the database exists
        self.meta: Dict[str, str] = {}
        self._erased = False  # the open transaction deleted rows
        if self.path.is_dir():
            raise VoiceprintError(f"{path}: is a folder, not a voiceprint database")
        if self.path.exists():
            self._open_existing()
        if self.connection is None and not create:
            raise VoiceprintError(f"{path}: no such voiceprint database (enrol a speaker to create it)")
        if self.connection is None and model_hash is None:
            raise VoiceprintError(f"{path}: a new voiceprint database needs a model")

    # ------------------------------------------------------------ opening
    def _connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode (transactions are explicit), foreign keys and secure_delete on."""
        try:
            connection = sqlite3.connect(str(self.path), timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as err:
            raise VoiceprintError(f"{self.path}: cannot open the database ({err})") from None
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute("PRAGMA secure_delete = ON")
        return connection

    def _open_existing(self) -> None:
        """Connect to an existing file and check it; a file without any schema stays unconnected (empty)."""
        self.connection = self._connect()
        try:
            if self._schema_less():
                self.close()
            else:
                self._check()
        except sqlite3.DatabaseError as err:
            self.close()
            raise VoiceprintError(f"{self.path}: not a speechbrain_ext voiceprint database ({err})") from None
        except VoiceprintError:
            self.close()
            raise
        self._warn_if_exposed()

    def _schema_less(self) -> bool:
        """True for an SQLite file with no tables and no application_id (e.g. empty)."""
        return self._pragma("application_id") == 0 and not self._tables()

    def _tables(self) -> Set[str]:
        return {row[0] for row in self.connection.execute("SELECT name FROM sqlite_master WHERE type='table'")}

    def _check(self) -> None:
        """Refuse a file that is not ours or of another model; upgrade an older schema."""
        app_id = self._pragma("application_id")
        if app_id != APPLICATION_ID:
            raise VoiceprintError(f"{self.path}: not a speechbrain_ext voiceprint database "
                                  f"(SQLite application_id {app_id}, expected {APPLICATION_ID})")
        self._upgrade()
        missing = ", ".join(sorted(_TABLES - self._tables()))
        if missing:
            raise VoiceprintError(f"{self.path}: voiceprint database lacks table(s) {missing}")
        meta = dict(self.connection.execute("SELECT key, value FROM meta"))
        if self.model_hash is not None and meta.get("model_hash") != self.model_hash:
            made_by = _describe(meta.get("model_name"), meta.get("model_hash"))
            raise VoiceprintError(f"{self.path}: its voiceprints were made by model {made_by}, not by model "
                                  f"{_describe(self.model_name, self.model_hash)}; use that model or another database")
        self.meta = meta

    def _upgrade(self) -> None:
        """Bring an older schema to :data:`SCHEMA_VERSION` in one transaction, or refuse it in one line."""
        version = self._pragma("user_version")
        if version == SCHEMA_VERSION:
            return
        if version not in _UPGRADES:
            raise VoiceprintError(f"{self.path}: voiceprint schema version {version}, this code reads "
                                  f"versions 1 to {SCHEMA_VERSION}")
        problem = self._read_only_problem()
        if problem is not None:
            raise VoiceprintError(f"{self.path}: voiceprint schema version {version} needs an upgrade to "
                                  f"version {SCHEMA_VERSION}, but {problem}")
        with self.transaction():
            self._apply_upgrades()

    def _apply_upgrades(self) -> None:
        """Inside a write transaction: upgrade from the current version (another process may have run them)."""
        for version in range(self._pragma("user_version"), SCHEMA_VERSION):
            self._run_script(_UPGRADES[version])
        self.connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def _run_script(self, script: str) -> None:
        """Execute ``;``-separated statements inside the open transaction (``executescript`` would commit)."""
        for statement in script.split(";"):
            if statement.strip():
                self.connection.execute(statement)

    def _pragma(self, name: str) -> int:
        return int(self.connection.execute(f"PRAGMA {name}").fetchone()[0])

    def _warn_if_exposed(self) -> None:
        """Warn once per database if it, its -wal or its -shm grants other users any access."""
        modes = {}
        for suffix in ("", "-wal", "-shm"):
            with contextlib.suppress(FileNotFoundError):
                modes[self.path.name + suffix] = os.stat(f"{self.path}{suffix}").st_mode & 0o777
        exposed = ", ".join(f"{name} {mode:o}" for name, mode in modes.items() if mode & 0o077)
        if exposed and str(self.path.absolute()) not in _warned_paths:
            _warned_paths.add(str(self.path.absolute()))
            logger.warning(f"{self.path}: voiceprints are open to other users (mode {exposed}); "
                           f"chmod {FILE_MODE:o} {self.path}*")

    def _read_only_problem(self) -> Optional[str]:
        """Why the file (or, for a new one, its folder) cannot be written, or None."""
        target = self.path if self.path.exists() else self.path.absolute().parent
        mode = target.stat().st_mode
        if not os.access(target, os.W_OK) or not mode & 0o222:
            return (f"the voiceprint database is read-only "
                    f"({'file' if target == self.path else 'folder'} permissions {oct(mode & 0o777)})")
        return None

    # ------------------------------------------------------------ writing
    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` write transaction; calls made inside it join it.

        The first write to a new database creates the file (mode 0600 less the umask) and its schema in this same
        transaction. If the body raises, everything is rolled back (a file created here stays without schema,
        which counts as empty).
        """
        if self.connection is not None and self.connection.in_transaction:
            yield self.connection  # nested: part of the enclosing transaction
            return
        problem = self._read_only_problem()
        if problem is not None:
            raise VoiceprintError(f"{self.path}: {problem}")
        creating = self.connection is None
        try:
            if creating:
                self._create_file()
            with self._immediate():
                if creating:
                    self._initialise()
                yield self.connection
        except BaseException:
            if creating:
                self.close()
            raise

    def _create_file(self) -> None:
        """Create the database file with :data:`FILE_MODE` (kept if it exists) and connect in WAL mode."""
        os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, FILE_MODE))
        self.connection = self._connect()
        self.connection.execute("PRAGMA journal_mode = WAL")

    def _initialise(self) -> None:
        """Inside the first write transaction: create the schema, unless another process just did."""
        if self._schema_less():
            self._run_script(_SCHEMA)
            self.connection.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            self.connection.execute("PRAGMA user_version = 1")
            self.connection.executemany("INSERT INTO meta VALUES (?, ?)", [
                ("model_hash", self.model_hash), ("model_name", self.model_name), ("created_at", _now())])
            self._apply_upgrades()
        self._check()

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[None]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (then :meth:`_checkpoint` if rows were deleted), or ``ROLLBACK``."""
        self._erased = False
        try:
            self.connection.execute("BEGIN IMMEDIATE")
            yield
            self.connection.execute("COMMIT")
        except BaseException as exc:
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise VoiceprintError(f"{self.path}: cannot write the voiceprint database ({exc})") from None
            raise
        if self._erased:
            self._checkpoint()

    def _delete(self, sql: str, params: Sequence[object]) -> int:
        """Run a DELETE inside the open transaction, noting that the WAL must be erased after it."""
        count = self.connection.execute(sql, params).rowcount
        self._erased = self._erased or count > 0
        return count

    def _checkpoint(self) -> None:
        """Copy the WAL into the (zero-overwritten) database and truncate it: no deleted row stays in -wal."""
        busy = self.connection.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            logger.warning(f"{self.path}: other connections are reading; deleted voiceprints stay in "
                           f"{self.path.name}-wal until the next removal or re-enrolment")

    def save(self, speaker_id: str, embeddings: np.ndarray, sources: Sequence[str], replace: bool = True,
             event: Optional[Event] = None) -> int:
        """Store utterance embeddings ``[N, D]`` (N >= 1, normalised here) of a speaker, with their ``sources``
        ``[N]`` (file path or label), and recompute its voiceprint, logging ``event`` in the same transaction.

        ``replace`` drops and erases the speaker's previous embeddings (re-enrolment), else these are added to them.
        Returns the number of embeddings the voiceprint now averages.
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
        now = _now()
        with self.transaction() as db:
            if replace:  # a new speaker has nothing to delete
                self._delete("DELETE FROM embeddings WHERE speaker_id = ?", (speaker_id,))
            db.execute("INSERT OR IGNORE INTO speakers VALUES (?, ?, 0, ?, ?)", (speaker_id, b"", now, now))
            db.executemany("INSERT INTO embeddings (speaker_id, embedding, source, created_at) VALUES (?, ?, ?, ?)",
                           [(speaker_id, row.tobytes(), str(src), now) for row, src in zip(rows, sources)])
            stored = self.embeddings(speaker_id)
            voiceprint = scoring.voiceprints(stored)[0].numpy()  # the enrolment rule evaluation uses
            db.execute("UPDATE speakers SET voiceprint = ?, num_utterances = ?, updated_at = ? WHERE speaker_id = ?",
                       (voiceprint.tobytes(), len(stored), now, speaker_id))
            if event is not None:
                self.log_event(event)
        return len(stored)

    def remove(self, speaker_id: str, event: Optional[Event] = None) -> None:
        """Delete and erase a speaker with its embeddings, logging ``event`` in the same transaction."""
        if self.connection is None:  # nothing to remove, and no reason to create the file
            raise self._unknown(speaker_id)
        with self.transaction():
            if self._delete("DELETE FROM speakers WHERE speaker_id = ?", (speaker_id,)) == 0:
                raise self._unknown(speaker_id)
            if event is not None:
                self.log_event(event)

    def log_event(self, event: Event) -> int:
        """Append ``event`` to the audit trail, filling in its time, model hash and id (in its own transaction if
        none is open); returns the id."""
        with self.transaction() as db:
            event.time, event.model_hash = _now(), self.meta["model_hash"]
            event.id = db.execute(_INSERT_EVENT, dataclasses.astuple(event)).lastrowid
        return event.id

    def add_challenge(self, challenge: Challenge, issued_at: float, event: Event) -> None:
        """Store a new challenge of an enrolled speaker, logging ``event`` in the same transaction."""
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM speakers WHERE speaker_id = ?", (challenge.speaker_id,)).fetchone() is None:
                raise self._unknown(challenge.speaker_id)
            db.execute("INSERT INTO challenges VALUES (?, ?, ?, ?, ?, NULL)",
                       (challenge.nonce, challenge.speaker_id, challenge.digits, issued_at, challenge.expires_at))
            self.log_event(event)

    def challenge(self, nonce: str) -> Tuple[Optional[Challenge], Optional[float]]:
        """The challenge named ``nonce`` and when it was used (None: not yet); ``(None, None)`` if there is none."""
        rows = self._rows("SELECT nonce, speaker_id, digits, expires_at, used_at FROM challenges WHERE nonce = ?",
                          (nonce,))
        return (Challenge(*rows[0][:4]), rows[0][4]) if rows else (None, None)

    def spend_challenge(self, nonce: str, when: float) -> None:
        """Mark a challenge used at Unix time ``when`` (inside the claim's transaction)."""
        with self.transaction() as db:
            db.execute("UPDATE challenges SET used_at = ? WHERE nonce = ? AND used_at IS NULL", (when, nonce))

    # ------------------------------------------------------------ reading
    def _rows(self, sql: str, params: Sequence[object] = ()) -> List[tuple]:
        """All rows of a query; none while the database does not exist yet."""
        return [] if self.connection is None else self.connection.execute(sql, params).fetchall()

    def _unknown(self, speaker_id: Optional[str]) -> UnknownSpeaker:
        if self.count() == 0:
            return UnknownSpeaker(f"{self.path}: no speakers are enrolled")
        return UnknownSpeaker(f"unknown speaker id {speaker_id!r} (not enrolled in {self.path})")

    def _matrix(self, sql: str, speaker_id: Optional[str] = None) -> Tuple[List[str], np.ndarray]:
        """Keys and float32 blobs of a ``SELECT key, blob`` query (of ``speaker_id``), the blobs as rows ``[N, D]``."""
        rows = self._rows(sql, () if speaker_id is None else (speaker_id,))
        if not rows:
            raise self._unknown(speaker_id)
        matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype=np.float32).reshape(len(rows), -1)
        return [key for key, _ in rows], matrix.copy()

    def embeddings(self, speaker_id: str) -> np.ndarray:
        """The speaker's stored utterance embeddings (L2-normalised), shape ``[N, D]``."""
        return self._matrix("SELECT id, embedding FROM embeddings WHERE speaker_id = ? ORDER BY id", speaker_id)[1]

    def voiceprint(self, speaker_id: str) -> np.ndarray:
        """The speaker's voiceprint, float32 ``[D]``."""
        return self._matrix("SELECT speaker_id, voiceprint FROM speakers WHERE speaker_id = ?", speaker_id)[1][0]

    def voiceprints(self) -> Tuple[List[str], np.ndarray]:
        """All speaker ids (sorted) and their voiceprints ``[S, D]``; an empty store raises."""
        return self._matrix("SELECT speaker_id, voiceprint FROM speakers ORDER BY speaker_id")

    def speakers(self) -> List[SpeakerInfo]:
        """Every enrolled speaker, sorted by id."""
        return [SpeakerInfo(*row) for row in self._rows(
            "SELECT speaker_id, num_utterances, created_at, updated_at FROM speakers ORDER BY speaker_id")]

    def count(self) -> int:
        """Number of enrolled speakers."""
        return len(self._rows("SELECT speaker_id FROM speakers"))

    def events(self, speaker_id: Optional[str] = None, since: Optional[str] = None) -> List[Event]:
        """The audit trail, oldest first: of one speaker id, and from time ``since`` (:func:`utc_iso`) on."""
        return [Event(*row) for row in self._rows(
            f"SELECT {_EVENT_COLUMNS} FROM events WHERE (?1 IS NULL OR speaker_id = ?1) "
            f"AND (?2 IS NULL OR time >= ?2) ORDER BY id", (speaker_id, since))]

    # ------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Close the connection (a store that never wrote a new database has none)."""
        if self.connection is not None:
            self.connection.close()
        self.connection = None

    def __enter__(self) -> "VoiceprintStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
