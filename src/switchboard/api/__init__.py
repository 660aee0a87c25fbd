"""Object kinds and the pure rules about them.

Objects are plain JSON-shaped dicts (`Obj`), exactly as they travel on the
wire. This package owns: which kinds exist (`kinds`), label and field
selectors (`selectors`), patches (`patch`), wire decoding (`protobuf`),
schemas and strict field validation (`schema`), and per-kind defaulting and
validation (`service`, …). It performs no I/O and imports nothing above it.
"""
