"""The stages ``make demo`` and the ablation share: each one of the project's own commands, run resumably.

generate a corpus (``data_prep/synth_digits.py``) -> prepare a split (the yaml's ``prepare_data``) ->
pre-train / transfer (``recipes/train.py``) -> evaluate (``recipes/evaluate.py``) -> export (``recipes/export.py``).

A :class:`Stage` is one command, printed before it runs, its output on the terminal or in a log file. A stage
whose ``done`` file exists is skipped; a training stage records its command there, so that a run folder made
with another command is an error rather than a silent mix. The commands themselves resume from checkpoints.
"""
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence

from speechbrain_ext.io_utils import write_json

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
RUN_MARKER = "run.json"  # a finished training stage: {"command": [...], "wall_s": s}
LEGACY_MARKER = "ablation_run.json"  # the same, written by the ablation before this module existed

_print_lock = threading.Lock()


def say(text: str) -> None:
    """Print a progress line at once (safe from worker threads)."""
    with _print_lock:
        print(text, flush=True)


class StageError(RuntimeError):
    """A stage failed or its folder holds another command's run; the message says which."""


class Stage:
    """One resumable command.

    ``done``: the file whose existence means finished (``None``: always run); one named :data:`RUN_MARKER` is
    written here with the command. ``log``: where the output goes (``None``: the terminal). ``invalidates``:
    ``done`` files of later stages made from this one's output, removed when this one is (re-)run. ``ok``: the
    exit statuses that are not a failure (a verification's reject is 1).
    """

    def __init__(self, name: str, cmd: Sequence, done: Optional[Path] = None, log: Optional[Path] = None,
                 invalidates: Sequence[Path] = (), ok: Sequence[int] = (0,)):
        self.name, self.cmd, self.done, self.log = name, [str(c) for c in cmd], done, log
        self.invalidates, self.ok = list(invalidates), tuple(ok)

    def run(self, label: str = "", threads: int = 0) -> dict:
        """Run unless done; returns ``{"command", "wall_s", "exit"}`` (the recorded one when skipped)."""
        tag = f"[{label}] " if label else ""
        if self.done is not None and (self.done.parent / LEGACY_MARKER).is_file():
            raise StageError(f"{self.done.parent} holds a run of an older ablation ({LEGACY_MARKER}); "
                             "use another output folder")
        if self.done is not None and self.done.is_file():
            record = json.loads(self.done.read_text()) if self.done.name == RUN_MARKER else {"command": self.cmd}
            if record["command"] != self.cmd:
                raise StageError(f"{self.done.parent} holds a run made with another command:\n  "
                                 f"{shlex.join(record['command'])}\nuse another output folder")
            say(f"{tag}skip {self.name} (done: {self.done})")
            return record
        say(f"\n{tag}=== {self.name}\n$ {shlex.join(self.cmd)}")
        start = time.time()
        code = self._execute(threads)
        record = {"command": self.cmd, "wall_s": round(time.time() - start, 2), "exit": code}
        if code not in self.ok:
            tail = "" if self.log is None else "; last lines of the log:\n" + "\n".join(
                self.log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:])
            raise StageError(f"stage '{self.name}' failed (exit {code}){tail}")
        if self.done is not None and self.done.name == RUN_MARKER:
            write_json(self.done, record)
        for path in self.invalidates:
            path.unlink(missing_ok=True)
        say(f"{tag}done  {self.name} in {record['wall_s']:.0f} s")
        return record

    def _execute(self, threads: int) -> int:
        env = child_env(threads)
        if self.log is None:
            return subprocess.run(self.cmd, cwd=ROOT, env=env).returncode
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "w", encoding="utf-8") as log:
            return subprocess.run(self.cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT).returncode


def child_env(threads: int = 0) -> Dict[str, str]:
    """The commands' environment: offline, this checkout first on the path, ``threads`` CPU threads (0: torch's)."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    if threads:
        env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_stages(stages: List[Stage], what: str, jobs: int = 1, threads: int = 0) -> List[dict]:
    """Run ``stages``, ``jobs`` at a time, each with ``threads`` CPU threads; the first failure stops them."""
    say(f"\n=== {what}: {len(stages)} run(s)")
    labels = [f"{what} {i + 1}/{len(stages)}" for i in range(len(stages))]
    if jobs <= 1:
        return [stage.run(label, threads) for stage, label in zip(stages, labels)]
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(lambda pair: pair[0].run(pair[1], threads), zip(stages, labels)))


def flags(overrides: Mapping[str, object]) -> List[str]:
    """``{"seed": 7}`` -> ``["--seed=7"]`` (SpeechBrain's override syntax)."""
    return [f"--{key}={value}" for key, value in overrides.items()]


# ---------------------------------------------------------------- the commands
def synth_command(folder: Path, domain: str, speakers: int, utts: int, seed: int) -> List:
    """Generate a built-in corpus: ``source`` (English, text-independent) or ``target`` (Mandarin digits)."""
    return [PY, "data_prep/synth_digits.py", "--seed", seed, "--output_folder", folder, "--domain", domain,
            "--num_speakers", speakers, "--utts_per_speaker", utts]


def train_command(yaml: str, overrides: Mapping[str, object], extra: Sequence[str] = ()) -> List:
    """``recipes/train.py`` with a yaml, its overrides and raw ``--key=value`` flags."""
    return [PY, "recipes/train.py", yaml, *flags(overrides), *extra]


def evaluate_command(yaml: str, model: Path, prep: Path, out: Path, **overrides) -> List:
    """``recipes/evaluate.py``: the model of a training run or save folder on a prepared split."""
    return [PY, "recipes/evaluate.py", yaml, f"--model_folder={model}", f"--prep_folder={prep}",
            f"--output_folder={out}", *flags(overrides)]


def export_command(save: Path, out: Path, evaluation: Path, digits: Optional[Path] = None) -> List:
    """``recipes/export.py``: a SpeakerRecognition folder with the evaluation's threshold and results (and the
    digit recogniser of the save folder ``digits`` as ``digits/``)."""
    return [PY, "recipes/export.py", "--checkpoint_folder", save, "--output_folder", out,
            "--threshold_file", evaluation / "threshold.json", "--results_json", evaluation / "results.json",
            *(["--digits_model", digits] if digits is not None else [])]


def prepare(yaml: str, overrides: Mapping[str, object]) -> None:
    """Run a yaml's own ``prepare_data`` here (it skips a split already prepared with the same options).

    Overrides go in as yaml text, as on the command line, so ``seed: 7`` is an int.
    """
    from speechbrain_ext.builder import build_modules, read_nodes

    text = "\n".join(f"{key}: {value if isinstance(value, (int, float)) else json.dumps(str(value))}"
                     for key, value in overrides.items())
    build_modules(read_nodes(ROOT / yaml, ["prepare_data"], text, fill_placeholders=False))["prepare_data"]()


def step_time(train_log: Path) -> Optional[float]:
    """Mean over epochs of ``step_time_s``, which the Brains write to ``train_log.txt`` (None if absent)."""
    if not train_log.is_file():
        return None
    times = [float(m) for m in re.findall(r"train step_time_s: ([0-9.e+-]+)", train_log.read_text())]
    return statistics.mean(times) if times else None
