"""The signal contract (re-exported from the tokenizer stage, where it is defined).

``tokenizer`` may import nothing of ours (DESIGN.md §3), yet reading a file needs the
contract; so it is defined there and re-exported here as ``clef.contract.SignalContract``.
"""

from tokenizer.contract import CANONICAL_CHANNELS, FilterParams, SignalContract, SpectrogramParams

__all__ = ["CANONICAL_CHANNELS", "FilterParams", "SignalContract", "SpectrogramParams"]
