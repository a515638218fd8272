"""Tokenizer stage: EDF/BDF reading, canonical montage, preprocessing, spectrogram, VQGAN.

This package imports nothing else of the platform (ARCHITECTURE.md, "Packages and layers").
"""

from tokenizer.channels import (
    CANONICAL_ALIASES,
    ChannelMap,
    ChannelMapError,
    classify_label,
    map_channels,
    normalise_label,
)
from tokenizer.contract import CANONICAL_CHANNELS, FilterParams, SignalContract, SpectrogramParams
from tokenizer.deid import Deidentified
from tokenizer.edf_data import Annotation
from tokenizer.edf_header import EDFHeader, SignalHeader, read_header
from tokenizer.errors import (
    BipolarMontageError,
    ContractMismatchError,
    CorruptHeaderError,
    DenseCapError,
    EmptyFileError,
    FileChangedError,
    IngestError,
    NoDataRecordsError,
    NoEEGChannelsError,
    NoSignalsError,
    NotEDFError,
    TooFewChannelsError,
    TooShortError,
    TruncatedFileError,
    UnitError,
    UnreadableFileError,
)
from tokenizer.hashing import file_sha256
from tokenizer.ingest import follow_recording, read_recording
from tokenizer.recording import ChannelReport, Recording

__all__ = [
    "Annotation", "BipolarMontageError", "CANONICAL_ALIASES", "CANONICAL_CHANNELS", "ChannelMap", "ChannelMapError",
    "ChannelReport", "DenseCapError",
    "ContractMismatchError", "CorruptHeaderError", "Deidentified", "EDFHeader", "EmptyFileError",
    "FileChangedError", "FilterParams", "IngestError", "NoDataRecordsError", "NoEEGChannelsError", "NoSignalsError",
    "NotEDFError", "Recording", "SignalContract", "SignalHeader", "SpectrogramParams",
    "TooFewChannelsError", "TooShortError", "TruncatedFileError", "UnitError", "UnreadableFileError",
    "classify_label", "file_sha256", "follow_recording", "map_channels", "normalise_label", "read_header", "read_recording",
]
