import json

import pytest
from pydantic import ValidationError

from tokenizer import CANONICAL_CHANNELS, SignalContract


def test_defaults_match_design():
    c = SignalContract()
    assert c.channels == CANONICAL_CHANNELS and len(c.channels) == 19
    assert c.channels[:3] == ("Fp1", "Fp2", "F7") and c.channels[-1] == "O2"
    assert c.sfreq == 200 and c.units == "uV" and c.window_s == 1280
    assert c.filters.l_freq == 0.1 and c.filters.h_freq == 75 and c.filters.notch_freq == 60
    sp = c.spectrogram
    assert (sp.window_s, sp.step_s, sp.bandwidth, sp.fmin, sp.fmax, sp.n_freqs) == (4, 1, 1, 0, 32, 128)
    assert c.window_samples == 256000


def test_json_round_trip_and_digest(tmp_path):
    c = SignalContract(filters={"notch_freq": 50.0}, min_channels=12)
    again = SignalContract.from_json(c.to_json())
    assert again == c and again.digest() == c.digest()
    c.save(tmp_path / "contract.json")
    assert SignalContract.load(tmp_path / "contract.json") == c
    assert json.loads(c.to_json())["filters"]["notch_freq"] == 50.0
    assert c.digest() != SignalContract().digest()
    assert c.diff(SignalContract()) == {"filters.notch_freq": (50.0, 60.0), "min_channels": (12, 10)}


def test_frozen():
    c = SignalContract()
    with pytest.raises(ValidationError):
        c.sfreq = 250  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs, fragment",
    [
        ({"sfreq": 100}, "Nyquist"),
        ({"filters": {"l_freq": 80, "h_freq": 75}}, "l_freq must be below"),
        ({"spectrogram": {"fmax": 40}}, "n_freqs must equal"),
        ({"channels": ("Fp1", "fp1")}, "unique"),
        ({"min_channels": 20}, "exceeds"),
        ({"bogus": 1}, "Extra inputs"),
        ({"units": "mV"}, "uV"),
    ],
)
def test_invalid_contracts_are_refused(kwargs, fragment):
    with pytest.raises(ValidationError, match=fragment):
        SignalContract(**kwargs)


def test_the_reference_contract_keeps_its_digest_and_json_form():
    """The digest keys every spectrogram cache and is recorded in every checkpoint: the JSON it
    hashes (sorted keys, indent 2) must not change unless the contract itself does."""
    c = SignalContract()
    assert c.digest() == "d7881e086d3f78fe"
    assert c.to_json() == json.dumps(c.model_dump(mode="json"), sort_keys=True, indent=2)
    assert c.to_json().startswith('{\n  "channels": [\n    "Fp1",')
