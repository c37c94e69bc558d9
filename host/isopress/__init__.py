"""isopress: host agent, CLI and test rig for a laboratory isostatic press.

The board firmware lives in the repository's ``firmware/`` tree and the shared protocol
in the ``isoproto`` package; this package is everything that runs on the PC beside the
glovebox.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
