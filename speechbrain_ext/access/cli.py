"""Command line: ``speechbrain-ext`` / ``python -m speechbrain_ext``.

Enrol speakers into a voiceprint database and check claims against it:

    speechbrain-ext enroll    --model MODEL --db DB SPEAKER AUDIO [AUDIO ...] [--append]
    speechbrain-ext challenge --model MODEL --db DB SPEAKER [--digits N] [--ttl SECONDS]
    speechbrain-ext verify    --model MODEL --db DB SPEAKER AUDIO [--challenge NONCE] [--threshold T]
    speechbrain-ext identify  --model MODEL --db DB AUDIO [--top-k K]
    speechbrain-ext list      --db DB
    speechbrain-ext remove    --db DB SPEAKER
    speechbrain-ext log       --db DB [--speaker S] [--since ISO-TIME]
    speechbrain-ext serve     --model MODEL --db DB [--host 127.0.0.1] [--port 8080] [--workers N]

Add ``--json`` for machine-readable output. Exit status: ``verify`` 0 accept,
1 reject, 2 error; ``identify`` 0 when the best match is accepted, 1 when
none is; other commands 0 on success; every error is one line on stderr and
status 2. ``list``, ``remove`` and ``log`` do not load the model (fast start).

Every enroll, challenge, verify, identify and remove, failed ones included,
appends an event to the database's audit trail (``log`` lists it). A claim
is rejected (exit 1, with its reason) as a ``replay`` if its audio file was
handed in before (as a claim, or enrolled for the claimed speaker); with
``--max-failures N --window MINUTES``, as ``locked`` if the speaker has N
rejected claims within the window. ``challenge`` (a model with a digit
recogniser) prints a one-time prompt: say its digits, then ``verify ...
--challenge NONCE`` passes only if the nonce is the speaker's, unused and not
expired, and the digits heard are the prompt (else ``unknown_challenge``,
``used_challenge``, ``expired`` or ``wrong_digits``); ``--require-challenge``
refuses claims without one.
"""
import argparse
import dataclasses
import json
import logging
import sys
import warnings
from datetime import datetime, timezone
from typing import List, Optional, Sequence

EXIT_ACCEPT, EXIT_REJECT, EXIT_ERROR = 0, 1, 2
PROG = "speechbrain-ext"
AUDITED = ("enroll", "challenge", "verify", "identify", "remove")
WITH_MODEL = ("enroll", "challenge", "verify", "identify")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its eight subcommands."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", required=True, help="voiceprint database file (SQLite)")
    db.add_argument("--json", action="store_true", help="print JSON instead of text")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", required=True, help="exported model folder (recipes/export.py)")
    model.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    claim = argparse.ArgumentParser(add_help=False)
    claim.add_argument("--threshold", type=float, default=None,
                       help="decision threshold (default: the model's calibrated one); accept iff score >= it")
    claim.add_argument("--allow-replay", action="store_true",
                       help="for testing only: score a recording handed in before instead of rejecting it")
    claim.add_argument("--max-failures", type=int, metavar="N",
                       help="lock a speaker after N rejected claims within --window (default: no limit)")
    claim.add_argument("--window", type=float, metavar="MINUTES", help="rate-limit window, minutes")

    parser = argparse.ArgumentParser(prog=PROG, description="\n\n".join(__doc__.split("\n\n")[1:3]),
                                     epilog="\n\n".join(__doc__.split("\n\n")[3:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("enroll", parents=[db, model], help="enrol (or re-enrol) a speaker from utterances")
    p.add_argument("speaker", help="speaker id")
    p.add_argument("audio", nargs="+", help="utterance files (an argument may join several with ';')")
    p.add_argument("--append", action="store_true", help="add to the speaker's utterances instead of replacing them")
    p = sub.add_parser("challenge", parents=[db, model], help="issue a one-time prompt (digits to say) to a speaker")
    p.add_argument("speaker", help="enrolled speaker id")
    p.add_argument("--digits", type=int, default=6, metavar="N", help="prompt length, digits (default: 6)")
    p.add_argument("--ttl", type=float, default=60.0, metavar="SECONDS",
                   help="time to answer it, seconds (default: 60)")
    p = sub.add_parser("verify", parents=[db, model, claim], help="check a claim: exit 0 accept, 1 reject, 2 error")
    p.add_argument("speaker", help="claimed speaker id")
    p.add_argument("audio", help="test utterance file")
    p.add_argument("--challenge", metavar="NONCE", help="the nonce of the prompt said in AUDIO (from challenge)")
    p.add_argument("--max-digit-errors", type=int, default=0, metavar="N",
                   help="edits allowed between the digits heard and the prompt (default: 0)")
    p.add_argument("--require-challenge", action="store_true", help="refuse a claim without --challenge")
    p = sub.add_parser("identify", parents=[db, model, claim], help="rank the enrolled speakers for an utterance")
    p.add_argument("audio", help="test utterance file")
    p.add_argument("--top-k", type=int, default=5, help="number of candidates shown (default: 5)")
    sub.add_parser("list", parents=[db], help="list the enrolled speakers")
    p = sub.add_parser("remove", parents=[db], help="delete and erase a speaker and its voiceprint")
    p.add_argument("speaker", help="speaker id")
    p = sub.add_parser("log", parents=[db], help="list the audit trail (oldest first)")
    p.add_argument("--speaker", help="only events of this speaker id")
    p.add_argument("--since", metavar="ISO-TIME", help="only events from this time on (e.g. 2024-05-01T08:00Z)")
    p = sub.add_parser("serve", parents=[model, claim], help="run the HTTP service (speechbrain_ext.access.service)")
    p.add_argument("--db", required=True, help="voiceprint database file (SQLite); tokens are written next to it")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080; 0: any free port)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with the model loaded (default: 1)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest audio file, MB (default: 10)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="longest audio file, seconds (default: 30)")
    p.add_argument("--max-digit-errors", type=int, default=0, metavar="N",
                   help="edits allowed between the digits heard and the prompt (default: 0)")
    p.add_argument("--require-challenge", action="store_true", help="refuse claims without a nonce")
    p.add_argument("--ssl-keyfile", help="TLS private key (PEM): serve https (uvicorn's option)")
    p.add_argument("--ssl-certfile", help="TLS certificate chain (PEM), with --ssl-keyfile")
    p.add_argument("--kiosk-token-in-page", action="store_true",
                   help="put the door token into the kiosk page at / (only for a kiosk nobody else can reach)")
    return parser


def _print(args: argparse.Namespace, payload: object, text: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else ``text`` (nothing if empty)."""
    if args.json or text:
        print(json.dumps(payload) if args.json else text)


def _enrolment_files(args: argparse.Namespace) -> List[str]:
    """The files of ``enroll``, with ``;``-joined arguments split."""
    return [path for arg in args.audio for path in arg.split(";") if path]


def _planned_event(args: argparse.Namespace):
    """The audit event of this command as far as known before it runs (None for list and log)."""
    from speechbrain_ext.access.store import Event, audio_sha256

    if args.command not in AUDITED:
        return None
    files = _enrolment_files(args) if args.command == "enroll" else [getattr(args, "audio", None)]
    hashes = [audio_sha256(f) or "-" for f in files if f is not None]
    return Event(args.command, getattr(args, "speaker", None), audio_sha256=" ".join(hashes) or None,
                 nonce=getattr(args, "challenge", None))


def _enroll(args: argparse.Namespace, verifier, event) -> int:
    """Enrol (or re-enrol) a speaker; its event is logged in the enrolment's transaction."""
    event.decision = "enrolled"
    count = verifier.enroll(args.speaker, _enrolment_files(args), replace=not args.append, event=event)
    _print(args, {"speaker_id": args.speaker, "num_utterances": count},
           f"enrolled {args.speaker}: voiceprint of {count} utterance(s)")
    return 0


def _challenge(args: argparse.Namespace, verifier) -> int:
    """Issue a prompt (the Verifier logs it) and print it."""
    from speechbrain_ext.access.store import utc_iso

    issued = verifier.challenge(args.speaker, args.digits, args.ttl)
    expires = utc_iso(datetime.fromtimestamp(issued.expires_at, timezone.utc))
    _print(args, {**issued._asdict(), "expires_at": expires, "ttl_s": args.ttl},
           f"{issued.speaker_id}: say {issued.digits} before {expires}, then verify with --challenge {issued.nonce}")
    return 0


def _claim(args: argparse.Namespace, verifier) -> int:
    """``verify``, or ``identify`` (its best match is the claim; the Verifier settles and logs it): print it, and
    return 0 accept, 1 reject (by score, or by a refusal: replay, locked, a prompt's)."""
    from speechbrain_ext.access.audit import REFUSALS

    verify = args.command == "verify"
    ranked = [verifier.verify(args.speaker, args.audio, args.challenge)] if verify else \
        verifier.identify(args.audio, args.top_k)
    best = ranked[0]
    payload = [d.as_json(verifier.score_kind) for d in ranked]
    refused = best.reason in REFUSALS  # a refusal overrules the score of the best match only
    heard = "" if best.prompt is None else f"; prompt {best.prompt}, heard {best.recognised}"
    if verify:
        lines = [] if refused else [f"{'accept' if best.accepted else 'reject'} {best.speaker_id}: score "
                                    f"{best.score:.4f} ({verifier.score_kind}), threshold {best.threshold:.4f}{heard}"]
    else:
        lines = [f"{i + 1}. {d.speaker_id}  {d.score:.4f}  {'accept' if d.accepted else 'reject'}"
                 for i, d in enumerate(ranked)]
    if refused:  # replaces verify's line, follows identify's ranking
        lines.append(f"reject {best.speaker_id}: {best.reason} ({REFUSALS[best.reason]}){heard}")
    _print(args, payload[0] if verify else payload, "\n".join(lines))
    return EXIT_ACCEPT if best.accepted else EXIT_REJECT


def _with_model(args: argparse.Namespace, event) -> int:
    """``enroll``, ``challenge``, ``verify`` and ``identify``: check the claim options, load the model, then act."""
    from speechbrain_ext.access.audit import ClaimPolicy
    from speechbrain_ext.access.verifier import ClaimError, Verifier

    claims = args.command in ("verify", "identify")
    policy = ClaimPolicy(not args.allow_replay, args.max_failures, args.window,
                         getattr(args, "require_challenge", False), getattr(args, "max_digit_errors", 0)) \
        if claims else ClaimPolicy()
    with Verifier(args.model, args.db, getattr(args, "threshold", None), args.device,
                  create=args.command == "enroll", policy=policy) as verifier:
        if args.command == "enroll":
            return _enroll(args, verifier, event)
        try:
            return _challenge(args, verifier) if args.command == "challenge" else _claim(args, verifier)
        except ClaimError as err:  # the Verifier logged it
            return _fail(str(err))


def _event_line(event) -> str:
    """One audit event as a tab-separated line: time, command, speaker, decision, score, threshold,
    audio and model hashes (first 12 digits), error, prompt, recognised digits; ``-`` where empty."""
    score, threshold = ("-" if x is None else f"{x:.4f}" for x in (event.score, event.threshold))
    audio = " ".join(h[:12] for h in (event.audio_sha256 or "-").split())
    return "\t".join([event.time, event.command, event.speaker_id or "-", event.decision, score, threshold, audio,
                      event.model_hash[:12], event.error or "-", event.prompt or "-", event.recognised or "-"])


def _store_only(args: argparse.Namespace, event) -> int:
    """``list``, ``remove`` and ``log``: the database alone, no model."""
    from speechbrain_ext.access.audit import parse_since
    from speechbrain_ext.access.store import VoiceprintStore

    since = parse_since(args.since) if getattr(args, "since", None) else None
    with VoiceprintStore(args.db) as store:
        if args.command == "remove":
            event.decision = "removed"
            store.remove(args.speaker, event)
            _print(args, {"removed": args.speaker}, f"removed {args.speaker}")
        elif args.command == "log":
            events = store.events(args.speaker, since)
            _print(args, [dataclasses.asdict(e) for e in events], "\n".join(_event_line(e) for e in events))
        else:
            speakers = store.speakers()
            _print(args, [s._asdict() for s in speakers],
                   "\n".join(f"{s.speaker_id}\t{s.num_utterances} utterance(s)\tenrolled {s.created_at}\t"
                             f"updated {s.updated_at}" for s in speakers))
        return 0


def _log_failure(db: str, event, message: str) -> None:
    """Append the failed command's event if the database exists, is ours and is writable (else the error line
    alone says what is wrong)."""
    from speechbrain_ext.access.store import VoiceprintError, VoiceprintStore

    event.decision, event.error = "error", message
    try:
        with VoiceprintStore(db) as store:
            store.log_event(event)
    except (VoiceprintError, OSError):
        pass


def _quiet_logging() -> None:
    """Show only this package's warnings (e.g. "no threshold.json"); library chatter is dropped."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"{PROG}: warning: %(message)s"))
    handler.addFilter(lambda record: record.name.startswith("speechbrain_ext") and record.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run one command; returns the exit status (see module docstring)."""
    args = build_parser().parse_args(argv)
    _quiet_logging()
    warnings.filterwarnings("ignore")  # library deprecation notices would break the one-line contract
    event = _planned_event(args)
    try:
        if args.command == "serve":
            from speechbrain_ext.access.service import serve

            return serve(args)
        run = _with_model if args.command in WITH_MODEL else _store_only
        return run(args, event)
    except (ValueError, OSError) as err:  # AudioError, VoiceprintError, ModelError, missing files
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
    except Exception as err:  # noqa: BLE001 -- anything else, e.g. weights that do not fit: one line too
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if event is not None:
        _log_failure(args.db, event, message)
    return _fail(message)


def _fail(message: str) -> int:
    """Print the one error line; returns :data:`EXIT_ERROR`."""
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_ERROR

