"""The feedback layer: what users (and judges) said about answers in, preference datasets out.

- `records.py` (the feedback record, a quarantining reader, an atomic appender), `screening.py` (the table's
  Great Expectations suite and the bad-row gate), `preferences.py` (pairs from corrections, thumbs and AI
  feedback; PII and secret redaction, length limits, duplicates, eval leakage, caps; the seeded split),
  `build.py` (a build's steps), `exports.py` (TRL's format on disk, content-addressed);
- `config.py`: the preferences section.

May import: `evaluation` (AI feedback is judged), `reasoning`, `retrieval` and the shared leaves. Never
`monitoring` or above."""
