"""What a claim must pass besides its score: no replay, no lockout; decided and logged atomically.

A claim (``verify``, or ``identify`` as a claim to be its best match) is scored first; :func:`record_claim` then
settles it in one write transaction of the voiceprint store, so two processes cannot both pass the same check:

- **locked** (only with a rate limit, :attr:`ClaimPolicy.max_failures` within :attr:`ClaimPolicy.window_minutes`):
  the speaker has that many claims rejected (``reject`` or ``replay``) inside the window. Claims refused as
  ``locked`` do not count, so the lock lifts once the window has passed the failures. A lockout slows down
  guessing, but an impostor can also use it to lock out the genuine user.
- **replay**: the audio file's SHA-256 equals that of an earlier claim that got a decision (errors do not count),
  or of any file ever enrolled for the claimed speaker. Only byte-identical files are caught: a recording played
  through a loudspeaker, or re-encoded, is a different file.

Otherwise the score decides (``accept`` or ``reject``). The decision is written to the ``events`` table either way.
"""
import dataclasses
import sqlite3
from datetime import datetime, timedelta, timezone
from typing import Optional

from speechbrain_ext.access.store import Event, VoiceprintStore, utc_iso

CLAIMS = ("verify", "identify")
REFUSALS = ("replay", "locked")  # decisions that overrule the score


@dataclasses.dataclass(frozen=True)
class ClaimPolicy:
    """The checks of a claim besides its score (see the module docstring).

    ``replay_check`` rejects a recording handed in before (turn off for testing only); ``max_failures`` rejected
    claims within ``window_minutes`` lock a speaker (both None, the default: no rate limit).
    """

    replay_check: bool = True
    max_failures: Optional[int] = None
    window_minutes: Optional[float] = None

    def __post_init__(self) -> None:
        if (self.max_failures is None) != (self.window_minutes is None):
            raise ValueError("the rate limit needs both --max-failures and --window")
        if self.max_failures is not None and not (self.max_failures >= 1 and self.window_minutes > 0):
            raise ValueError(f"the rate limit needs --max-failures >= 1 and --window > 0 minutes, got "
                             f"{self.max_failures} and {self.window_minutes:g}")

    def refusal(self, db: sqlite3.Connection, speaker_id: str, audio_sha256: Optional[str]) -> Optional[str]:
        """``"locked"``, ``"replay"`` or None for a claim not yet logged (run inside the write transaction)."""
        if self.max_failures is not None and self._failures(db, speaker_id) >= self.max_failures:
            return "locked"
        if self.replay_check and audio_sha256 is not None and _replayed(db, speaker_id, audio_sha256):
            return "replay"
        return None

    def _failures(self, db: sqlite3.Connection, speaker_id: str) -> int:
        """Rejected claims (by score or as replays) for the speaker within the window."""
        since = utc_iso(datetime.now(timezone.utc) - timedelta(minutes=self.window_minutes))
        return db.execute("SELECT COUNT(*) FROM events WHERE speaker_id = ? AND time > ? AND command IN (?, ?) "
                          "AND decision IN ('reject', 'replay')", (speaker_id, since, *CLAIMS)).fetchone()[0]


def _replayed(db: sqlite3.Connection, speaker_id: str, audio_sha256: str) -> bool:
    """Whether the audio was claimed before (with a decision) or enrolled for ``speaker_id``."""
    claimed = db.execute("SELECT 1 FROM events WHERE audio_sha256 = ? AND command IN (?, ?) AND decision != 'error' "
                         "LIMIT 1", (audio_sha256, *CLAIMS)).fetchone()
    # enrolment events list one hash per file, space-separated: a 64-digit match is a whole hash
    enrolled = db.execute("SELECT 1 FROM events WHERE speaker_id = ? AND command = 'enroll' "
                          "AND decision = 'enrolled' AND instr(audio_sha256, ?) > 0 LIMIT 1",
                          (speaker_id, audio_sha256)).fetchone()
    return claimed is not None or enrolled is not None


def record_claim(store: VoiceprintStore, event: Event, policy: ClaimPolicy) -> str:
    """Settle a scored claim and log it, in one transaction; returns the final decision.

    ``event`` carries the command, speaker id (claimed, or best match), score, threshold, audio hash and the
    decision by score (``accept``/``reject``), which a refusal (:data:`REFUSALS`) replaces if one applies.
    """
    with store.transaction() as db:
        event.decision = policy.refusal(db, event.speaker_id, event.audio_sha256) or event.decision
        store.log_event(event)
    return event.decision


def parse_since(text: str) -> str:
    """An ISO 8601 time (date, or date and time, with or without offset; naive is UTC) as :func:`utc_iso`.

    Example
    -------
    >>> parse_since("2024-05-01T10:00:00+02:00"), parse_since("2024-05-01")
    ('2024-05-01T08:00:00Z', '2024-05-01T00:00:00Z')
    >>> parse_since("yesterday")
    Traceback (most recent call last):
    ...
    ValueError: --since 'yesterday': not an ISO 8601 time (e.g. 2024-05-01 or 2024-05-01T08:00:00Z)
    """
    try:
        moment = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)  # "Z": Python < 3.11
    except ValueError:
        raise ValueError(f"--since {text!r}: not an ISO 8601 time (e.g. 2024-05-01 or 2024-05-01T08:00:00Z)") from None
    return utc_iso(moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc))
