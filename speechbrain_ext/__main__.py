"""Command line: ``speechbrain-ext`` / ``python -m speechbrain_ext``.

Enrol speakers into a voiceprint database and check claims against it:

    speechbrain-ext enroll   --model MODEL --db DB SPEAKER AUDIO [AUDIO ...] [--append]
    speechbrain-ext verify   --model MODEL --db DB SPEAKER AUDIO [--threshold T]
    speechbrain-ext identify --model MODEL --db DB AUDIO [--top-k K]
    speechbrain-ext list     --db DB
    speechbrain-ext remove   --db DB SPEAKER
    speechbrain-ext log      --db DB [--speaker S] [--since ISO-TIME]
    speechbrain-ext serve    --model MODEL --db DB [--host 127.0.0.1] [--port 8080] [--workers N]

Add ``--json`` for machine-readable output. Exit status: ``verify`` 0 accept,
1 reject, 2 error; ``identify`` 0 when the best match is accepted, 1 when
none is; other commands 0 on success; every error is one line on stderr and
status 2. ``list``, ``remove`` and ``log`` do not load the model (fast start).

Every enroll, verify, identify and remove, failed ones included, appends an
event to the database's audit trail (``log`` lists it). A claim whose audio
file was handed in before (as a claim, or enrolled for the claimed speaker) is
rejected as a ``replay``; with ``--max-failures N --window MINUTES``, a speaker
with N rejected claims within the window is ``locked`` (both exit 1).
"""
import argparse
import dataclasses
import json
import logging
import sys
import warnings
from typing import List, Optional, Sequence

EXIT_ACCEPT, EXIT_REJECT, EXIT_ERROR = 0, 1, 2
PROG = "speechbrain-ext"
AUDITED = ("enroll", "verify", "identify", "remove")
REASONS = {"replay": "this recording was handed in before",
           "locked": "too many rejected claims for this speaker, try again later"}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its seven subcommands."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", required=True, help="voiceprint database file (SQLite)")
    db.add_argument("--json", action="store_true", help="print JSON instead of text")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", required=True, help="exported model folder (recipes/export.py)")
    model.add_argument("--threshold", type=float, default=None,
                       help="decision threshold (default: the model's calibrated one); accept iff score >= it")
    model.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    claim = argparse.ArgumentParser(add_help=False)
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
    p = sub.add_parser("verify", parents=[db, model, claim], help="check a claim: exit 0 accept, 1 reject, 2 error")
    p.add_argument("speaker", help="claimed speaker id")
    p.add_argument("audio", help="test utterance file")
    p = sub.add_parser("identify", parents=[db, model, claim], help="rank the enrolled speakers for an utterance")
    p.add_argument("audio", help="test utterance file")
    p.add_argument("--top-k", type=int, default=5, help="number of candidates shown (default: 5)")
    sub.add_parser("list", parents=[db], help="list the enrolled speakers")
    p = sub.add_parser("remove", parents=[db], help="delete and erase a speaker and its voiceprint")
    p.add_argument("speaker", help="speaker id")
    p = sub.add_parser("log", parents=[db], help="list the audit trail (oldest first)")
    p.add_argument("--speaker", help="only events of this speaker id")
    p.add_argument("--since", metavar="ISO-TIME", help="only events from this time on (e.g. 2024-05-01T08:00Z)")
    p = sub.add_parser("serve", parents=[model, claim], help="run the HTTP service (speechbrain_ext.service)")
    p.add_argument("--db", required=True, help="voiceprint database file (SQLite); tokens are written next to it")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine only)")
    p.add_argument("--port", type=int, default=8080, help="TCP port (default: 8080; 0: any free port)")
    p.add_argument("--workers", type=int, default=1, help="worker processes, each with the model loaded (default: 1)")
    p.add_argument("--max-upload-mb", type=float, default=10.0, help="largest audio file, MB (default: 10)")
    p.add_argument("--max-seconds", type=float, default=30.0, help="longest audio file, seconds (default: 30)")
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
    from speechbrain_ext.voiceprints import Event, audio_sha256

    if args.command not in AUDITED:
        return None
    files = _enrolment_files(args) if args.command == "enroll" else [getattr(args, "audio", None)]
    hashes = [audio_sha256(f) or "-" for f in files if f is not None]
    return Event(args.command, getattr(args, "speaker", None), audio_sha256=" ".join(hashes) or None)


def _enroll(args: argparse.Namespace, verifier, event) -> int:
    """Enrol (or re-enrol) a speaker; its event is logged in the enrolment's transaction."""
    event.decision = "enrolled"
    count = verifier.enroll(args.speaker, _enrolment_files(args), replace=not args.append, event=event)
    _print(args, {"speaker_id": args.speaker, "num_utterances": count},
           f"enrolled {args.speaker}: voiceprint of {count} utterance(s)")
    return 0


def _claim(args: argparse.Namespace, verifier, event, policy) -> int:
    """``verify``, or ``identify`` (its best match is the claim): log the claim, print it, and return 0 accept,
    1 reject (by score, or as a replay or while locked)."""
    from speechbrain_ext.audit import REFUSALS, record_claim

    verify = args.command == "verify"
    ranked = [verifier.verify(args.speaker, args.audio)] if verify else verifier.identify(args.audio, args.top_k)
    best = ranked[0]
    event.speaker_id, event.score, event.threshold = best.speaker_id, best.score, best.threshold
    event.decision = "accept" if best.accepted else "reject"
    final = record_claim(verifier.store, event, policy)
    reason = final if final in REFUSALS else None  # overrules the score of the best match only
    payload = [{"speaker_id": d.speaker_id, "score": d.score, "threshold": d.threshold,
                "accepted": d.accepted and (i > 0 or reason is None), "score_kind": verifier.score_kind,
                "reason": None if i > 0 else reason} for i, d in enumerate(ranked)]
    if verify:
        lines = [] if reason else [f"{final} {best.speaker_id}: score {best.score:.4f} ({verifier.score_kind}), "
                                   f"threshold {best.threshold:.4f}"]
    else:
        lines = [f"{i + 1}. {d.speaker_id}  {d.score:.4f}  {'accept' if d.accepted else 'reject'}"
                 for i, d in enumerate(ranked)]
    if reason is not None:  # replaces verify's line, follows identify's ranking
        lines.append(f"reject {best.speaker_id}: {reason} ({REASONS[reason]})")
    _print(args, payload[0] if verify else payload, "\n".join(lines))
    return EXIT_ACCEPT if final == "accept" else EXIT_REJECT


def _with_model(args: argparse.Namespace, event) -> int:
    """``enroll``, ``verify`` and ``identify``: check the claim options, load the model, then act."""
    from speechbrain_ext.audit import ClaimPolicy
    from speechbrain_ext.verifier import Verifier

    policy = None if args.command == "enroll" else ClaimPolicy(not args.allow_replay, args.max_failures, args.window)
    with Verifier(args.model, args.db, args.threshold, args.device, create=args.command == "enroll") as verifier:
        return _enroll(args, verifier, event) if args.command == "enroll" else _claim(args, verifier, event, policy)


def _event_line(event) -> str:
    """One audit event as a tab-separated line: time, command, speaker, decision, score, threshold,
    audio and model hashes (first 12 digits), error; ``-`` where empty."""
    score, threshold = ("-" if x is None else f"{x:.4f}" for x in (event.score, event.threshold))
    audio = " ".join(h[:12] for h in (event.audio_sha256 or "-").split())
    return "\t".join([event.time, event.command, event.speaker_id or "-", event.decision, score, threshold, audio,
                      event.model_hash[:12], event.error or "-"])


def _store_only(args: argparse.Namespace, event) -> int:
    """``list``, ``remove`` and ``log``: the database alone, no model."""
    from speechbrain_ext.audit import parse_since
    from speechbrain_ext.voiceprints import VoiceprintStore

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
    from speechbrain_ext.voiceprints import VoiceprintError, VoiceprintStore

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
            from speechbrain_ext.service import serve

            return serve(args)
        run = _with_model if args.command in ("enroll", "verify", "identify") else _store_only
        return run(args, event)
    except (ValueError, OSError) as err:  # AudioError, VoiceprintError, ModelError, missing files
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
    except Exception as err:  # noqa: BLE001 -- anything else, e.g. weights that do not fit: one line too
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    if event is not None:
        _log_failure(args.db, event, message)
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
