"""huImages' sizes: `240x160` fits inside keeping the aspect ratio, `75x75!` crops to
exactly that shape, `300x0` sets one side; none of them enlarges.

The server plans a size with build_plan(size_options(size)) and the Python helpers
predict it with scaled_size(): both end in the same geometry (the resize operation's
own output_size), so a helper's width and height are the served image's.
"""

from __future__ import annotations

from ..imaging.operations import KINDS
from ..options.path import size_options
from ..options.values import SIZE, parse_mode
from ..plan import Resize


def is_size(text: str) -> bool:
    return bool(SIZE.match(text)) and text.rstrip("!") != "0x0"


def resize_for(size: str) -> Resize:
    """The resize a size asks for (filter and position do not change its geometry)."""
    options = size_options(size)
    return Resize(int(options["w"]) if options["w"] else None, int(options["h"]) if options["h"] else None,
                  parse_mode(options["mode"]), enlarge=False)


def scaled_size(width: int, height: int, size: str) -> tuple[int, int]:
    """What `size` makes of an image `width` x `height` as displayed (EXIF-oriented)."""
    op = resize_for(size)
    return KINDS[Resize].output_size(op, (width, height))
