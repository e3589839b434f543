"""Testing kit for nextword backends: the shared conformance suite and fixture builders.

A backend author subclasses :class:`~nextword.testing.conformance.GeneratorConformance` and
provides a ``generator`` fixture; see the plugin author's guide.
"""

from nextword.testing.conformance import GeneratorConformance

__all__ = ["GeneratorConformance"]
