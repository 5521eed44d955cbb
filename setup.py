"""speechbrain_ext: short-utterance speaker verification on top of SpeechBrain."""
from setuptools import find_packages, setup

setup(
    name="speechbrain_ext",
    version="0.1.0",
    description=(
        "SpeechBrain recipe extension for short-utterance (1-2 s) speaker "
        "verification: pre-training, transfer with sub-center AAM and "
        "long-short KL, evaluation and export."
    ),
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    packages=find_packages(include=["speechbrain_ext", "speechbrain_ext.*", "data_prep"]),
    package_data={"speechbrain_ext.access": ["static/*.html", "static/*.js", "static/*.css"]},
    install_requires=[
        "torch==2.14.1",
        "torchaudio==2.11.0",
        "speechbrain==1.1.2",
        "hyperpyyaml",
        "sentencepiece",
        "numpy",
        "pandas",
        "soundfile",
        "tqdm",
        "matplotlib",
        "scipy>=1.12",  # scipy.optimize.isotonic_regression (minCllr)
        "fastapi",  # speechbrain-ext serve
        "uvicorn",
        "python-multipart",
    ],
    extras_require={
        # httpx: FastAPI's TestClient; playwright drives the system chromium (never `playwright install`)
        "test": ["pytest", "httpx", "playwright"],
        "onnx": ["onnx", "onnxruntime"],
        "hub": ["huggingface_hub"],
    },
    entry_points={"console_scripts": ["speechbrain-ext=speechbrain_ext.access.cli:main"]},
)
