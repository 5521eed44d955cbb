"""What a claim must pass besides its score: no lockout, its prompt, no replay; decided and logged atomically.

A claim (``verify``, or ``identify`` as a claim to be its best match) is scored (and, when prompted, its digits
recognised) first; :func:`record_claim` then settles it in one ``BEGIN IMMEDIATE`` write transaction of the
voiceprint store, so two processes cannot both pass the same check. The first refusal that applies, in this order,
replaces the score's decision:

- **locked** (only with a rate limit, :attr:`ClaimPolicy.max_failures` within :attr:`ClaimPolicy.window_minutes`):
  the speaker has that many claims rejected (by score or by any refusal but ``locked``) inside the window. Claims
  refused as ``locked`` do not count, so the lock lifts once the window has passed the failures. A lockout slows
  down guessing, but an impostor can also use it to lock out the genuine user.
- **unknown_challenge**, **used_challenge**, **expired** (prompted claims, which carry a nonce): the nonce was not
  issued for the claimed speaker (or not at all), was handed in before, or its time ran out. A nonce is spent by
  the first claim that presents it for its speaker in time, whatever that claim's outcome, in the same transaction
  as the claim's event: of two doors handing in the same nonce at once, exactly one gets past this check.
- **replay**: the audio file's SHA-256 equals that of an earlier claim that got a decision (errors do not count),
  or of any file ever enrolled for the claimed speaker. Only byte-identical files are caught: a recording played
  through a loudspeaker, or re-encoded, is a different file (against which the prompt is the defence).
- **wrong_digits** (prompted claims): the recognised digits differ from the prompt by more than
  :attr:`ClaimPolicy.max_digit_errors` edits (insertions, deletions, substitutions).

Otherwise the score decides (``accept`` or ``reject``). The decision is written to the ``events`` table either way,
with the prompt and the recognised digits of a prompted claim.
"""
import dataclasses
import sqlite3
import time
from datetime import datetime, timedelta, timezone
from typing import Optional

from speechbrain_ext.access.store import Event, VoiceprintStore, utc_iso

CLAIMS = ("verify", "identify")
CHALLENGE_REFUSALS = ("unknown_challenge", "used_challenge", "expired")
# the decisions that overrule the score, in the order they are checked, with what they tell the claimant
REFUSALS = {"locked": "too many rejected claims for this speaker, try again later",
            "unknown_challenge": "no such prompt was issued to this speaker",
            "used_challenge": "this prompt was answered before",
            "expired": "this prompt has expired",
            "replay": "this recording was handed in before",
            "wrong_digits": "the digits heard are not the prompt"}
FAILURES = ("reject", *(r for r in REFUSALS if r != "locked"))  # what the rate limit counts


@dataclasses.dataclass(frozen=True)
class ClaimPolicy:
    """The checks of a claim besides its score (see the module docstring).

    ``replay_check`` rejects a recording handed in before (turn off for testing only); ``max_failures`` rejected
    claims within ``window_minutes`` lock a speaker (both None, the default: no rate limit). ``require_challenge``
    refuses claims without a nonce (an error, not a decision); ``max_digit_errors`` is how many edits a prompted
    claim's recognised digits may be from its prompt. Both are the door's settings, not the claimant's.
    """

    replay_check: bool = True
    max_failures: Optional[int] = None
    window_minutes: Optional[float] = None
    require_challenge: bool = False
    max_digit_errors: int = 0

    def __post_init__(self) -> None:
        if (self.max_failures is None) != (self.window_minutes is None):
            raise ValueError("the rate limit needs both --max-failures and --window")
        if self.max_failures is not None and not (self.max_failures >= 1 and self.window_minutes > 0):
            raise ValueError(f"the rate limit needs --max-failures >= 1 and --window > 0 minutes, got "
                             f"{self.max_failures} and {self.window_minutes:g}")
        if self.max_digit_errors < 0:
            raise ValueError(f"--max-digit-errors must be >= 0, got {self.max_digit_errors}")

    def locked(self, db: sqlite3.Connection, speaker_id: str) -> bool:
        """Whether the speaker has :attr:`max_failures` failed claims within the window (inside the transaction)."""
        if self.max_failures is None:
            return False
        since = utc_iso(datetime.now(timezone.utc) - timedelta(minutes=self.window_minutes))
        failures = db.execute(
            f"SELECT COUNT(*) FROM events WHERE speaker_id = ? AND time > ? AND command IN (?, ?) "
            f"AND decision IN ({', '.join('?' * len(FAILURES))})", (speaker_id, since, *CLAIMS, *FAILURES)).fetchone()
        return failures[0] >= self.max_failures

    def replayed(self, db: sqlite3.Connection, speaker_id: str, audio_sha256: Optional[str]) -> bool:
        """Whether the replay check is on and refuses this audio (inside the transaction)."""
        return self.replay_check and audio_sha256 is not None and _replayed(db, speaker_id, audio_sha256)


def _replayed(db: sqlite3.Connection, speaker_id: str, audio_sha256: str) -> bool:
    """Whether the audio was claimed before (with a decision) or enrolled for ``speaker_id``."""
    claimed = db.execute("SELECT 1 FROM events WHERE audio_sha256 = ? AND command IN (?, ?) AND decision != 'error' "
                         "LIMIT 1", (audio_sha256, *CLAIMS)).fetchone()
    # enrolment events list one hash per file, space-separated: a 64-digit match is a whole hash
    enrolled = db.execute("SELECT 1 FROM events WHERE speaker_id = ? AND command = 'enroll' "
                          "AND decision = 'enrolled' AND instr(audio_sha256, ?) > 0 LIMIT 1",
                          (speaker_id, audio_sha256)).fetchone()
    return claimed is not None or enrolled is not None


def _spend_challenge(store: VoiceprintStore, event: Event, now: float) -> Optional[str]:
    """Check the nonce of a prompted claim and spend it if it is good (inside the transaction); returns its
    refusal (:data:`CHALLENGE_REFUSALS`) or None, and sets ``event.prompt`` to the digits of a nonce of the
    claimed speaker."""
    challenge, used_at = store.challenge(event.nonce)
    if challenge is None or challenge.speaker_id != event.speaker_id:
        return "unknown_challenge"  # another speaker's prompt is not shown in this claim's event
    event.prompt = challenge.digits
    if used_at is not None:
        return "used_challenge"
    if now >= challenge.expires_at:
        return "expired"
    store.spend_challenge(event.nonce, now)
    return None


def record_claim(store: VoiceprintStore, event: Event, policy: ClaimPolicy, now: Optional[float] = None) -> str:
    """Settle a scored claim and log it, in one transaction; returns the final decision.

    ``event`` carries the command, speaker id (claimed, or best match), score, threshold, audio hash and the
    decision by score (``accept``/``reject``), which the first refusal (:data:`REFUSALS`, in that order) replaces;
    a prompted claim also carries its ``nonce`` and the ``recognised`` digits (the prompt is filled in here).
    ``now`` (Unix time, default the current one) decides expiry.
    """
    from speechbrain_ext.digits import digit_errors  # torch and SpeechBrain: only for a claim, not for `log`

    now = time.time() if now is None else now
    with store.transaction() as db:
        locked = policy.locked(db, event.speaker_id)  # checked before the nonce, which is spent nonetheless
        challenge = None if event.nonce is None else _spend_challenge(store, event, now)
        wrong = event.prompt is not None and digit_errors(event.prompt, event.recognised or "") > \
            policy.max_digit_errors
        refusals = [locked and "locked", challenge, policy.replayed(db, event.speaker_id, event.audio_sha256)
                    and "replay", wrong and "wrong_digits"]
        event.decision = next((r for r in refusals if r), event.decision)
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
