"""The web interface and JSON API of the ChestAid daemon."""
