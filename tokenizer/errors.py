"""Typed ingestion errors: one clear message naming the file, what was expected and what was found."""

from __future__ import annotations

from pathlib import Path


class IngestError(Exception):
    """A recording could not be ingested.

    Parameters
    ----------
    path : str or Path
        The file concerned.
    message : str
        What was expected and what was found.
    """

    #: Short machine-readable kind, used in manifests and JSON output.
    kind: str = "ingest_error"

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


class UnreadableFileError(IngestError):
    """The path does not exist, is a directory, or cannot be opened."""

    kind = "unreadable"


class EmptyFileError(IngestError):
    """The file has zero bytes."""

    kind = "empty_file"


class NotEDFError(IngestError):
    """The file is not EDF/EDF+/BDF/BDF+ (wrong magic bytes)."""

    kind = "not_edf"


class CorruptHeaderError(IngestError):
    """A header field cannot be parsed or is inconsistent."""

    kind = "corrupt_header"


class TruncatedFileError(IngestError):
    """The file ends before the data the header announces."""

    kind = "truncated"


class NoDataRecordsError(IngestError):
    """The header announces zero data records."""

    kind = "no_data_records"


class FileChangedError(IngestError):
    """A recording followed while it is written changed other than by growing: its header
    changed (other than its record count) or the file shrank."""

    kind = "file_changed"


class NoSignalsError(IngestError):
    """The file holds no ordinary signals (e.g. an annotation-only EDF+)."""

    kind = "no_signals"


class NoEEGChannelsError(IngestError):
    """No channel maps to the canonical montage."""

    kind = "no_eeg_channels"


class BipolarMontageError(IngestError):
    """A bipolar montage that cannot be converted to potentials (too few connected electrodes)."""

    kind = "bipolar_montage"


class DenseCapError(IngestError):
    """A dense cap named by electrode position (BioSemi ABC ``A1``..``H32``, EGI ``E1``..``E256``):
    its names are not 10-20 sites, so it is not mapped by name."""

    kind = "dense_cap"


class TooFewChannelsError(IngestError):
    """Fewer canonical electrodes than the contract's minimum."""

    kind = "too_few_channels"


class UnitError(IngestError):
    """An EEG channel carries a physical unit that is not a voltage."""

    kind = "bad_unit"


class TooShortError(IngestError):
    """The recording holds no continuous stretch as long as one spectrogram window."""

    kind = "too_short"


class ContractMismatchError(IngestError):
    """A recording does not satisfy the signal contract it is checked against."""

    kind = "contract_mismatch"
