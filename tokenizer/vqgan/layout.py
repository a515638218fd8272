"""How the contract's channels are grouped into the images the VQGAN encodes.

``joint`` (the CLEF reference): all channels are the input feature maps of one image, so
one token describes a (frequency, time) tile of the whole scalp. A code of ~10 bits cannot
also say which side a change is on: measured on held-out sessions, the decoded
left-minus-right band power of a ``joint`` tokenizer does not correlate with the
original's (bench/RESULTS.md, "Tokenizer clinical content"), and a band-power probe on
its reconstructions loses the asymmetry task.

``hemispheres``: each side is its own image of its lateral electrodes followed by the
midline ones, with the right side's electrodes in the order of their left homologues
(Fp2 under Fp1, F8 under F7, ...), so one encoder, codebook and decoder serve both sides
(a mirror-symmetric tokenizer: a left and a right focal slowing get the same code, on
different token rows). The two latent grids are stacked along the frequency rows (left
rows first), so the token grid is ``(2 × freq, time)`` and every later stage (token
tables, the session transformer's positions) is unchanged. The decoder reconstructs
each side; a midline channel is the mean of its two reconstructions.

10-20 naming decides the side: an odd final digit is left, an even one right, a final
``z`` the midline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

#: Channel groupings a VQGAN config may choose (``model.layout``).
Layout = Literal["joint", "hemispheres"]


def _side(name: str) -> str:
    last = name[-1].lower()
    if last == "z":
        return "mid"
    if last.isdigit():
        return "left" if int(last) % 2 else "right"
    raise ValueError(f"channel {name!r} has no 10-20 side (expected a final digit or 'z')")


def _homologue(name: str) -> str:
    digits = len(name) - len(name.rstrip("0123456789"))
    stem, number = name[:-digits], int(name[-digits:])
    return f"{stem}{number + 1}"


@dataclass(frozen=True)
class HemisphereLayout:
    """Channel indices of the left and right images (lateral electrodes, then midline).

    Attributes
    ----------
    left, right : tuple of int
        Contract indices of each image's channels; ``right[i]`` is the homologue of
        ``left[i]`` for the lateral part, the midline part is shared.
    n_lateral : int
        Lateral electrodes per side.
    """

    left: tuple[int, ...]
    right: tuple[int, ...]
    n_lateral: int

    @property
    def n_image_channels(self) -> int:
        """Channels of one side's image."""
        return len(self.left)

    @classmethod
    def from_channels(cls, channels: tuple[str, ...]) -> "HemisphereLayout":
        """Group contract channels by side.

        Raises
        ------
        ValueError
            A channel without a 10-20 side, a lateral channel without its homologue, or
            no lateral channels.
        """
        index = {c.lower(): i for i, c in enumerate(channels)}
        left = [c for c in channels if _side(c) == "left"]
        mid = [index[c.lower()] for c in channels if _side(c) == "mid"]
        missing = [_homologue(c) for c in left if _homologue(c).lower() not in index]
        n_right = sum(_side(c) == "right" for c in channels)
        if not left or missing or n_right != len(left):
            raise ValueError(f"model.layout 'hemispheres' needs every lateral channel with its homologue; "
                             f"channels {list(channels)} lack {missing or 'a left/right balance'}")
        lat_l = [index[c.lower()] for c in left]
        lat_r = [index[_homologue(c).lower()] for c in left]
        return cls(left=tuple(lat_l + mid), right=tuple(lat_r + mid), n_lateral=len(left))

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, channels, F, T)`` → ``(2B, image channels, F, T)``: all left images, then all right."""
        return torch.cat([x[:, list(self.left)], x[:, list(self.right)]], dim=0)

    def merge(self, y: torch.Tensor, n_channels: int) -> torch.Tensor:
        """Inverse of :meth:`split` for reconstructions: midline channels averaged over both sides."""
        b = y.shape[0] // 2
        left, right = y[:b], y[b:]
        out = y.new_zeros((b, n_channels, *y.shape[2:]))
        k = self.n_lateral
        out[:, list(self.left[:k])] = left[:, :k]
        out[:, list(self.right[:k])] = right[:, :k]
        if len(self.left) > k:
            out[:, list(self.left[k:])] = (left[:, k:] + right[:, k:]) / 2
        return out


def stack_sides(z: torch.Tensor) -> torch.Tensor:
    """Latents ``(2B, D, f, t)`` of :meth:`HemisphereLayout.split` images → ``(B, D, 2f, t)``, left rows first."""
    b = z.shape[0] // 2
    return torch.cat([z[:b], z[b:]], dim=2)


def unstack_sides(z: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`stack_sides`."""
    f = z.shape[2] // 2
    return torch.cat([z[:, :, :f], z[:, :, f:]], dim=0)
