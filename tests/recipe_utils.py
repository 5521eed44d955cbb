"""Helpers for tests that run the training recipe on the tiny corpus."""
import os
import subprocess
import sys
from pathlib import Path
from typing import List

ROOT = Path(__file__).resolve().parents[1]
# A very small ECAPA and short crops: seconds per epoch on 2 CPU cores.
TINY = ["--channels=[16,16,16,16,48]", "--attention_channels=8", "--emb_dim=16",
        "--sentence_len=0.5", "--batch_size=4", "--n_mels=24"]


def train_command(yaml: str, data_folder: Path, output_folder: Path, *extra: str) -> List[str]:
    """``python recipes/train.py <yaml>`` on the tiny corpus with tiny-model overrides."""
    return [sys.executable, str(ROOT / "recipes" / "train.py"), str(ROOT / "hparams" / yaml),
            f"--data_folder={data_folder}", f"--output_folder={output_folder}", *TINY, *extra]


def run(cmd: List[str], timeout: int = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)
