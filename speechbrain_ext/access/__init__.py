"""Access control: the door built on an exported model (the other half of the project is training).

- ``store``: the SQLite voiceprint store and its audit trail (``VoiceprintStore``, ``Event``).
- ``verifier``: enrol, verify and identify with a model folder and a store (``Verifier``).
- ``audit``: what a claim must pass besides its score (replay, lockout), settled and logged atomically.
- ``cli``: the ``speechbrain-ext`` command line (``python -m speechbrain_ext``).
"""
