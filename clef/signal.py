"""The signal stage's public reading functions, re-exported for the later stages.

``services`` and ``benchmark_tasks`` may import ``clef`` but not ``tokenizer`` (DESIGN.md
§3); what they need of the signal stage (file hashes, de-identified header facts,
recordings in the canonical montage, multitaper spectra and the band table for the
band-power baseline) is defined in ``tokenizer`` and reached through this module.
"""

from tokenizer import (
           CANONICAL_CHANNELS,
           ChannelMap,
           ChannelMapError,
           IngestError,
           SignalContract,
           map_channels,
           read_header,
           read_recording,
)
from tokenizer.channels import SCHEMES as REFERENCE_SCHEMES
from tokenizer.channels import reference_scheme
from tokenizer.deid import anonymous_id, deidentify, known_patient_hash
from tokenizer.hashing import file_sha256
from tokenizer.multitaper import CANONICAL_BANDS, multitaper_spectrogram

__all__ = ["CANONICAL_BANDS", "CANONICAL_CHANNELS", "ChannelMap", "ChannelMapError", "IngestError", "REFERENCE_SCHEMES",
           "SignalContract", "anonymous_id", "deidentify", "file_sha256", "known_patient_hash", "map_channels",
           "multitaper_spectrogram", "read_header", "read_recording", "reference_scheme"]
