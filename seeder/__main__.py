"""``python -m seeder``: run the seeder's command line."""

from __future__ import annotations

from seeder.cli import main

if __name__ == "__main__":
    main()
