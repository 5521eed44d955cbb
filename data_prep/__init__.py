"""Data preparation: corpora -> SpeechBrain CSV manifests and trial lists.

Manifest format (all ``*.csv`` written here)
-------------------------------------------
Columns ``ID,duration,wav,start,stop,spk_id`` (SpeechBrain's), plus ``genre``
where the corpus has one.

- ``ID``: unique row id without whitespace, e.g. ``spk001/utt0003``.
- ``wav``: an absolute audio path, or several joined by ``;`` (a *concatenated*
  row: the files are read in order and joined into one signal). A list is used
  instead of writing concatenated copies so that preparation stays a
  header-only pass (fast, no duplicated corpus on disk); the cost is a few more
  file opens per training example.
- ``start``/``stop``: sample indices (16 kHz) into that (joined) signal,
  ``stop`` exclusive; a chunk of a long file or a test-duration crop is a row
  with a narrower ``start``/``stop``.
- ``duration``: ``(stop - start) / 16000`` in seconds.
- ``spk_id``: speaker label.

Trial lists (``trials.txt``, ``trials_<d>s.txt``): one trial a line,
``enroll_id test_id target|nontarget``, ids as in ``enroll.csv``/``test.csv``.
An ``enroll.csv`` row is one enrolment model; its ``wav`` may list several
utterances (embedded one by one and averaged, or concatenated).
"""
