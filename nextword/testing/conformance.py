"""The conformance suite every nextword backend is held to.

Subclass :class:`GeneratorConformance` in a test module and provide a ``generator`` fixture
that returns a loaded :class:`~nextword._contract.protocol.Generator`::

    import pytest
    import nextword
    from nextword.testing import GeneratorConformance

    class TestMyBackend(GeneratorConformance):
        @pytest.fixture(scope="class")
        def generator(self):
            return nextword.load("mybackend", "my-model")

The backend's capability declaration decides what each test checks: an option the backend
supports is checked for its behaviour, an option it declares unsupported is checked to raise
:class:`~nextword.errors.UnsupportedOption`. No test is skipped. A backend that returns only the
top N log-probabilities (``capabilities.logits`` False, a remote server) is checked against those:
a sampled or greedy token must be listed where the rule says it is among the most likely, and
the checks that need the full logits (the repetition-penalty rule on raw logits) check what can
be seen from outside instead.
"""

from __future__ import annotations

from nextword.testing._generation_checks import GenerationChecks
from nextword.testing._interface_checks import InterfaceChecks
from nextword.testing._suite import SAMPLE_VALUES

__all__ = ["SAMPLE_VALUES", "GeneratorConformance"]


class GeneratorConformance(InterfaceChecks, GenerationChecks):
    """Shared behaviour tests. Subclasses provide the ``generator`` fixture and may tune the knobs.

    Knobs (class attributes):

    * ``prompts``: prompts the tests use (plain English by default).
    * ``new_tokens``: tokens generated per test.
    * ``logit_tolerance``: how far two logits may differ and still count as a tie, for engines
      whose incremental and full-sequence evaluations differ by float noise.

    The checks come from :class:`~nextword.testing._interface_checks.InterfaceChecks` (identity,
    tokens, prediction, scoring, errors, lifecycle) and
    :class:`~nextword.testing._generation_checks.GenerationChecks` (decoding options, stop
    strings, streaming, async, batches).
    """
