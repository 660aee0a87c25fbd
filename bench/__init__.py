"""Benchmarks: each module runs Switchboard and its peer in the same run and prints the ratio.

Run them with `bench/run` (all) or `bench/run NAME ...`. A benchmark is a
module with a `main()` that prints one line per figure, in the shape

    what: switchboard X | peer Y | ratio Zx (target <= T): met

and exits non-zero only when it could not measure (a failed request, a
server that did not start), never because a target was missed. Times on
shared machines drift, so only the ratio within one run is meaningful.
"""
