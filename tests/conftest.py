"""Settings every test shares."""

from hypothesis import settings

# Hypothesis fails an example that takes longer than 200 ms by default: a timing
# assertion, which flakes on busy shared machines. Speed is measured in bench/.
settings.register_profile("switchboard", deadline=None)
settings.load_profile("switchboard")
