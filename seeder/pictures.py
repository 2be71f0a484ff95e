"""A picture for each seeded product: an SVG drawn from its category and name, nothing downloaded.

The category sets the motif (a bowl for food, a shirt for clothes, a bag for
accessories, a device for electronics) and the base colour; the SHA-256 of the
name picks the shade and scatters a few dots, and the name is written under the
motif. The bytes depend on nothing else, so the same ``--seed`` (the same names)
draws the same pictures, byte for byte. Each picture is a plain SVG without
scripts or links, as the inventory requires (:mod:`inventory_service.images`).
"""

from __future__ import annotations

import hashlib
from xml.sax.saxutils import escape, quoteattr

WIDTH, HEIGHT = 240, 180
#: Base hue of each category (degrees on the colour wheel).
HUES = {"food": 28, "clothes": 212, "accessories": 328, "electronics": 168}
#: The motif of each category, drawn in a 240 x 180 box around its middle.
MOTIFS = {
    "food": (
        '<path d="M78 78 h84 a42 42 0 0 1 -84 0z" fill="{ink}"/>'
        '<path d="M100 66 q-6 -10 0 -20 M120 66 q-6 -10 0 -20 M140 66 q-6 -10 0 -20" '
        'fill="none" stroke="{ink}" stroke-width="4" stroke-linecap="round"/>'
    ),
    "clothes": (
        '<path d="M96 44 l-30 16 10 22 14 -6 v56 h60 v-56 l14 6 10 -22 -30 -16 '
        'q-14 14 -28 0z" fill="{ink}"/>'
    ),
    "accessories": (
        '<path d="M104 64 v-8 a16 16 0 0 1 32 0 v8" fill="none" stroke="{ink}" stroke-width="6"/>'
        '<rect x="80" y="62" width="80" height="66" rx="10" fill="{ink}"/>'
    ),
    "electronics": (
        '<rect x="70" y="42" width="100" height="66" rx="6" fill="{ink}"/>'
        '<rect x="78" y="50" width="84" height="50" rx="3" fill="{light}"/>'
        '<path d="M110 108 h20 l6 18 h-32z" fill="{ink}"/>'
    ),
}
NAME_CHARACTERS = 30


def _hsl(hue: int, saturation: int, lightness: int) -> str:
    return f"hsl({hue % 360},{saturation}%,{lightness}%)"


def product_svg(category: str, name: str) -> bytes:
    """The product's picture: an SVG document of a few hundred bytes (same input, same bytes)."""
    digest = hashlib.sha256(f"{category}\n{name}".encode()).digest()
    hue = HUES.get(category, 45) + digest[0] % 41 - 20
    background = _hsl(hue, 55 + digest[1] % 20, 86 + digest[2] % 6)
    ink = _hsl(hue, 45 + digest[3] % 25, 32 + digest[4] % 12)
    light = _hsl(hue, 60, 94)
    dots = "".join(
        f'<circle cx="{digest[5 + 3 * i] % WIDTH}" cy="{digest[6 + 3 * i] % (HEIGHT - 40)}" '
        f'r="{4 + digest[7 + 3 * i] % 10}" fill="{ink}" opacity="0.15"/>'
        for i in range(6)
    )
    motif = MOTIFS.get(category, MOTIFS["accessories"]).format(ink=ink, light=light)
    label = name if len(name) <= NAME_CHARACTERS else name[: NAME_CHARACTERS - 1] + "…"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label={quoteattr(name)}>'
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="{background}"/>{dots}{motif}'
        f'<text x="{WIDTH // 2}" y="{HEIGHT - 14}" font-family="sans-serif" font-size="13" '
        f'fill="{ink}" text-anchor="middle">{escape(label)}</text></svg>'
    ).encode()
