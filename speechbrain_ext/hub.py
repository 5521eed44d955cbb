"""Publishing a model folder on the Hugging Face hub.

The folder needs no change to load from the hub: its Pretrainer fetches every file from the ``source``
``from_hparams`` is given (see ``speechbrain_ext.export``). Only the model card's loading snippet is rewritten
to name the hub repo.
"""
import shutil
import tempfile
from pathlib import Path
from typing import Optional

from speechbrain_ext.builder import ModelError
from speechbrain_ext.export import loading_snippet
from speechbrain_ext.io_utils import PathLike
from speechbrain_ext.model_folder import check_model_folder


def push_to_hub(folder: PathLike, repo_id: str, token: Optional[str] = None) -> str:
    """Upload a model folder with ``huggingface_hub.upload_folder``; returns the hub's commit URL.

    The uploaded model card's snippet loads ``source=repo_id``. A ``ModelError`` of one line when the hub
    cannot be reached or refuses the upload.
    """
    import huggingface_hub

    path = check_model_folder(folder)
    with tempfile.TemporaryDirectory(prefix="sbext_push_") as staging:
        shutil.copytree(path, staging, dirs_exist_ok=True)
        card = Path(staging, "README.md")
        if card.is_file():
            local, hub = "\n".join(loading_snippet(path.name)), "\n".join(loading_snippet(repo_id))
            card.write_text(card.read_text(encoding="utf-8").replace(local, hub), encoding="utf-8")
        try:
            huggingface_hub.create_repo(repo_id, token=token, exist_ok=True)
            commit = huggingface_hub.upload_folder(repo_id=repo_id, folder_path=staging, repo_type="model", token=token,
                                                   commit_message="Upload speechbrain_ext speaker verification model")
        except Exception as err:  # noqa: BLE001 -- any hub/network failure becomes one line
            raise ModelError(f"push to hub {repo_id} failed: {type(err).__name__}: "
                             f"{str(err).splitlines()[0] if str(err) else ''}") from None
    return str(getattr(commit, "commit_url", commit))
