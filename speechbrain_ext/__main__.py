"""Command line: ``speechbrain-ext`` / ``python -m speechbrain_ext``.

Enrol speakers into a voiceprint database and check claims against it:

    speechbrain-ext enroll   --model MODEL --db DB SPEAKER AUDIO [AUDIO ...] [--append]
    speechbrain-ext verify   --model MODEL --db DB SPEAKER AUDIO [--threshold T]
    speechbrain-ext identify --model MODEL --db DB AUDIO [--top-k K]
    speechbrain-ext list     --db DB
    speechbrain-ext remove   --db DB SPEAKER

Add ``--json`` for machine-readable output. Exit status: ``verify`` 0 accept,
1 reject, 2 error; ``identify`` 0 when the best match is accepted, 1 when
none is; other commands 0 on success; every error is one line on stderr and
status 2. ``list`` and ``remove`` do not load the model (fast start).
"""
import argparse
import json
import logging
import sys
import warnings
from typing import Optional, Sequence

EXIT_ACCEPT, EXIT_REJECT, EXIT_ERROR = 0, 1, 2
PROG = "speechbrain-ext"


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with its five subcommands."""
    db = argparse.ArgumentParser(add_help=False)
    db.add_argument("--db", required=True, help="voiceprint database file (SQLite)")
    db.add_argument("--json", action="store_true", help="print JSON instead of text")
    model = argparse.ArgumentParser(add_help=False)
    model.add_argument("--model", required=True, help="exported model folder (recipes/export.py)")
    model.add_argument("--threshold", type=float, default=None,
                       help="decision threshold (default: the model's calibrated one); accept iff score >= it")
    model.add_argument("--device", default="cpu", help="torch device (default: cpu)")

    parser = argparse.ArgumentParser(prog=PROG, description="\n\n".join(__doc__.split("\n\n")[1:3]),
                                     epilog=__doc__.split("\n\n")[-1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("enroll", parents=[db, model], help="enrol (or re-enrol) a speaker from utterances")
    p.add_argument("speaker", help="speaker id")
    p.add_argument("audio", nargs="+", help="utterance files (an argument may join several with ';')")
    p.add_argument("--append", action="store_true", help="add to the speaker's utterances instead of replacing them")
    p = sub.add_parser("verify", parents=[db, model], help="check a claim: exit 0 accept, 1 reject, 2 error")
    p.add_argument("speaker", help="claimed speaker id")
    p.add_argument("audio", help="test utterance file")
    p = sub.add_parser("identify", parents=[db, model], help="rank the enrolled speakers for an utterance")
    p.add_argument("audio", help="test utterance file")
    p.add_argument("--top-k", type=int, default=5, help="number of candidates shown (default: 5)")
    sub.add_parser("list", parents=[db], help="list the enrolled speakers")
    p = sub.add_parser("remove", parents=[db], help="delete a speaker and its voiceprint")
    p.add_argument("speaker", help="speaker id")
    return parser


def _print(args: argparse.Namespace, payload: object, text: str) -> None:
    """Print ``payload`` as JSON with ``--json``, else ``text`` (nothing if empty)."""
    if args.json or text:
        print(json.dumps(payload) if args.json else text)


def _decision_dict(decision, score_kind: str) -> dict:
    return {"speaker_id": decision.speaker_id, "score": decision.score, "threshold": decision.threshold,
            "accepted": decision.accepted, "score_kind": score_kind}


def _with_model(args: argparse.Namespace) -> int:
    """``enroll``, ``verify`` and ``identify``: load the model, then act."""
    from speechbrain_ext.verifier import Verifier

    with Verifier(args.model, args.db, args.threshold, args.device, create=args.command == "enroll") as verifier:
        if args.command == "enroll":
            files = [path for arg in args.audio for path in arg.split(";") if path]
            count = verifier.enroll(args.speaker, files, replace=not args.append)
            _print(args, {"speaker_id": args.speaker, "num_utterances": count},
                   f"enrolled {args.speaker}: voiceprint of {count} utterance(s)")
            return 0
        if args.command == "verify":
            d = verifier.verify(args.speaker, args.audio)
            _print(args, _decision_dict(d, verifier.score_kind),
                   f"{'accept' if d.accepted else 'reject'} {d.speaker_id}: score {d.score:.4f} "
                   f"({verifier.score_kind}), threshold {d.threshold:.4f}")
            return EXIT_ACCEPT if d.accepted else EXIT_REJECT
        ranked = verifier.identify(args.audio, args.top_k)
        _print(args, [_decision_dict(d, verifier.score_kind) for d in ranked],
               "\n".join(f"{i + 1}. {d.speaker_id}  {d.score:.4f}  {'accept' if d.accepted else 'reject'}"
                         for i, d in enumerate(ranked)))
        return EXIT_ACCEPT if ranked[0].accepted else EXIT_REJECT


def _store_only(args: argparse.Namespace) -> int:
    """``list`` and ``remove``: the database alone, no model."""
    from speechbrain_ext.voiceprints import VoiceprintStore

    with VoiceprintStore(args.db) as store:
        if args.command == "remove":
            store.remove(args.speaker)
            _print(args, {"removed": args.speaker}, f"removed {args.speaker}")
            return 0
        speakers = store.speakers()
        _print(args, [s._asdict() for s in speakers],
               "\n".join(f"{s.speaker_id}\t{s.num_utterances} utterance(s)\tenrolled {s.created_at}\t"
                         f"updated {s.updated_at}" for s in speakers))
        return 0


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
    try:
        return _with_model(args) if args.command in ("enroll", "verify", "identify") else _store_only(args)
    except (ValueError, OSError) as err:  # AudioError, VoiceprintError, ExportError, missing files
        message = str(err).splitlines()[0] if str(err) else type(err).__name__
    except Exception as err:  # noqa: BLE001 -- anything else, e.g. weights that do not fit: one line too
        message = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
