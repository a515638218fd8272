"""The cohort explorer: a web page over the store, served by ``clef serve`` at ``/``.

The page (``static/``: one HTML page, one JS module, one CSS file, shipped with the
package, nothing from a CDN) holds no data: every data call goes to the service's JSON
API with the API key in a header (:mod:`services.api.explorer` serves the page and the
endpoints the page needs beyond the API's own). :mod:`services.explorer.signals` reads a
stored session's recording for the page: its CSA spectrogram as a PNG and pages of EEG.
"""

from pathlib import Path

#: Folder of the page's files.
STATIC_DIR = Path(__file__).resolve().parent / "static"
