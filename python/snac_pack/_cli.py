"""The ``snac`` command that ``pip install snac-pack`` puts on the PATH: the
same command line as the Rust binary, run in this process."""

import sys

from . import _native


def main() -> None:
    sys.exit(_native.cli(["snac", *sys.argv[1:]]))


if __name__ == "__main__":
    main()
