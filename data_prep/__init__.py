"""Data preparation: corpora -> SpeechBrain CSV manifests and trial lists.

The formats are those of ``speechbrain_ext.manifest`` (columns
``ID,duration,wav,start,stop,spk_id``, plus ``genre`` where the corpus has
one; trial lines ``enroll_id test_id target|nontarget``). What preparation
puts in them:

- ``ID``: unique row id without whitespace, e.g. ``spk001/utt0003``.
- ``wav``: an absolute audio path, or several joined by ``;`` (a
  *concatenated* row). A list is used instead of writing concatenated copies
  so that preparation stays a header-only pass (fast, no duplicated corpus on
  disk); the cost is a few more file opens per training example.
- ``start``/``stop``: a chunk of a long file or a test-duration crop is a row
  with a narrower ``start``/``stop``.
- Trial lists (``trials.txt``, ``trials_<d>s.txt``) use the ids of
  ``enroll.csv``/``test.csv``. An ``enroll.csv`` row is one enrolment model;
  its ``wav`` may list several utterances (embedded one by one and averaged,
  or concatenated).
"""
